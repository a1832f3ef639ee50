//! A real nginx with `auth_request` in front of a tiny upstream, using the shipped
//! docs/integrations/nginx.conf. Requires the `nginx` binary (`.ci/run` installs it).

use crate::helpers::{eventually, spawn_app};
use axum::http::HeaderMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn nginx_binary() -> String {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    panic!("nginx is not installed: this test needs a real nginx (apt-get install nginx); .ci/run installs it");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The upstream API: remembers the headers of the last request it received.
async fn start_upstream(seen: Arc<Mutex<Option<HeaderMap>>>) -> u16 {
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap() = Some(headers);
            "upstream ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nginx(dir: &std::path::Path, server_block: &str) -> Nginx {
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {dir}/body;\n proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n uwsgi_temp_path {dir}/uwsgi;\n scgi_temp_path {dir}/scgi;\n{server_block}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    Nginx(child)
}

#[tokio::test]
async fn nginx_lets_through_only_what_the_key_allows() {
    let app = spawn_app().await;
    let site = app.create_site("protected").await;
    let other_site = app.create_site("elsewhere").await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let (write_id, write) = app.create_key("write", Some(&site)).await;
    let (_, foreign) = app.create_key("write", Some(&other_site)).await;

    let seen = Arc::new(Mutex::new(None));
    let upstream = start_upstream(seen.clone()).await;
    let proxy_port = free_port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/integrations/nginx.conf")).unwrap();
    let latchkey_address = app.address.trim_start_matches("http://");
    let server_block = shipped
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{proxy_port}"))
        .replace("127.0.0.1:8080", latchkey_address)
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"))
        .replace("SITE_ID", &site);
    let dir = tempfile::tempdir().unwrap();
    let _nginx = start_nginx(dir.path(), &server_block);

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{proxy_port}/content");
    let up = eventually(Duration::from_secs(10), || async { client.get(&url).send().await.is_ok() }).await;
    assert!(up, "nginx did not start; see its error output above");

    let call = |method: reqwest::Method, key: Option<&str>| {
        let mut request = client.request(method, &url);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        request.send()
    };
    assert_eq!(call(reqwest::Method::GET, None).await.unwrap().status(), 401);
    assert_eq!(call(reqwest::Method::GET, Some("lk_garbage")).await.unwrap().status(), 401);
    assert_eq!(call(reqwest::Method::GET, Some(&read)).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::POST, Some(&read)).await.unwrap().status(), 403);
    assert_eq!(call(reqwest::Method::GET, Some(&foreign)).await.unwrap().status(), 403);
    let response = call(reqwest::Method::POST, Some(&write)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "upstream ok");

    let headers = seen.lock().unwrap().clone().expect("the upstream saw the request");
    assert_eq!(headers["x-latchkey-key-id"], write_id.as_str());
    assert_eq!(headers["x-latchkey-permission"], "write");
    assert!(headers.get("x-api-key").is_none(), "the key reached the upstream");
    assert!(!format!("{headers:?}").contains(&write), "the key reached the upstream");

    app.block(&write_id).await;
    assert_eq!(call(reqwest::Method::POST, Some(&write)).await.unwrap().status(), 401, "blocked at once");
}
