//! A real nginx for tests: started from a generated config in a temporary directory,
//! killed when dropped. Shared by the integration suite and the multi-instance tests.

use std::process::{Child, Command, Stdio};

fn nginx_binary() -> String {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    panic!("nginx is not installed: this test needs a real nginx (apt-get install nginx); scripts/install-test-deps installs it");
}

pub struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts nginx in the foreground with `server_block` inside `http { }`, every path it
/// writes inside `dir`.
pub fn start_nginx(dir: &std::path::Path, server_block: &str) -> Nginx {
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
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
