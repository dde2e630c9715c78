//! What the process-level benches share (`mod common;` in benches/overload.rs and
//! benches/central.rs): the fake TCP device servers the system under test connects to, reading
//! a child's announced address, and environment knobs. Each bench uses its own part of it.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::Child;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// `key` from the environment, parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads a child's stdout until a line contains `marker`; returns what follows it. The rest
/// is drained in a thread.
pub fn address_after(child: &mut Child, marker: &str) -> String {
    let out = std::io::BufReader::new(child.stdout.take().expect("child stdout is piped"));
    let mut lines = out.lines();
    let addr = loop {
        let l = lines.next().expect("child prints its address").unwrap();
        if let Some(rest) = l.split(marker).nth(1) {
            break rest.trim().trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// Fake TCP device servers: one loopback listener per device; the system under test is
/// configured with their ports and connects to each.
#[derive(Default)]
pub struct DeviceServers {
    listeners: Vec<TcpListener>,
}

impl DeviceServers {
    /// `n` device servers on free loopback ports.
    pub async fn bind(n: usize) -> DeviceServers {
        let mut listeners = Vec::with_capacity(n);
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        DeviceServers { listeners }
    }

    /// Their ports, in order.
    pub fn ports(&self) -> Vec<u16> {
        self.listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    }

    /// Adds `more` after these.
    pub fn extend(&mut self, more: DeviceServers) {
        self.listeners.extend(more.listeners);
    }

    /// Waits (30 s at most each) until the system under test has connected to every one;
    /// returns the links, in order, with Nagle off (each write goes out as it is made).
    pub async fn accept_all(self, what: &str) -> Vec<TcpStream> {
        let mut links = Vec::with_capacity(self.listeners.len());
        for l in &self.listeners {
            let (s, _) = tokio::time::timeout(Duration::from_secs(30), l.accept())
                .await
                .unwrap_or_else(|_| panic!("{what} connects to every device within 30 s"))
                .unwrap();
            s.set_nodelay(true).unwrap();
            links.push(s);
        }
        links
    }
}
