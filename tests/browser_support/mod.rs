//! Headless Chromium over WebDriver (chromedriver) for the browser tests (`tests/browser.rs`,
//! `tests/console.rs`), and node-oidc-provider's pages as a browser meets them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use oidc_logout_test_support::{Proc, free_port};
use serde_json::{Value, json};

/// The few WebDriver (W3C) commands these tests need, over plain HTTP to chromedriver.
pub struct Driver {
    http: reqwest::Client,
    session: String,
    _chromedriver: Proc,
}

impl Driver {
    /// A headless Chromium session, or why there cannot be one.
    pub async fn start() -> Result<Self, String> {
        for tool in ["chromium", "chromedriver"] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Err(format!(
                    "{tool} is not installed (Debian: apt-get install chromium chromium-driver)"
                ));
            }
        }
        let port = free_port();
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={port}"));
        let chromedriver = Proc::spawn("chromedriver", command);
        chromedriver.wait_for("started successfully");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            },
        }}});
        let answer: Value = serde_json::from_str(
            &http
                .post(format!("{base}/session"))
                .body(capabilities.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("chromedriver would not start a session: {answer}"))?;
        Ok(Self {
            http,
            session: format!("{base}/session/{session}"),
            _chromedriver: chromedriver,
        })
    }

    pub async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_command(method, path, body).await {
            Ok(value) => value,
            Err(answer) => panic!("WebDriver {method} {path}: {answer}"),
        }
    }

    /// A command whose WebDriver error is the caller's to judge (a page in mid-navigation has
    /// no body yet).
    pub async fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let text = request
            .send()
            .await
            .expect("chromedriver answers")
            .text()
            .await
            .expect("body");
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        if answer["value"].get("error").is_some() {
            return Err(answer);
        }
        Ok(answer["value"].clone())
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.command("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's text; empty while a navigation has not given it a body yet.
    pub async fn text(&self) -> String {
        let Ok(element) = self
            .try_command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await
        else {
            return String::new();
        };
        let Some(body) = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
        else {
            return String::new();
        };
        self.try_command("GET", &format!("/element/{body}/text"), None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub async fn find(&self, css: &str) -> String {
        let element = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element")
            .to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command("POST", &format!("/element/{element}/click"), None)
            .await;
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.command("GET", "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait (a few seconds at most) until the page's text holds `needle`.
    pub async fn until_text(&self, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..50 {
            text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{needle:?} never showed at {}: {text}", self.url().await);
    }

    pub async fn quit(&self) {
        let _ = self.http.delete(&self.session).send().await;
    }

    /// Delete the cookies of the page's site.
    pub async fn delete_cookies(&self) {
        let _ = self
            .http
            .delete(format!("{}/cookie", self.session))
            .send()
            .await;
    }

    /// Save what the window shows as a PNG.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.command("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        std::fs::write(path, bytes).expect("write the screenshot");
    }

    /// Size the window (CSS pixels).
    pub async fn window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }
}

pub fn skipped(why: &str) {
    eprintln!("SKIPPED: NO BROWSER TEST RAN: {why}");
}

/// node-oidc-provider's consent pages (one per client and grant), until the application answers.
pub async fn consent(driver: &Driver) {
    for _ in 0..50 {
        let url = driver.url().await;
        if !url.contains("/interaction/") {
            break;
        }
        if driver.text().await.contains("Continue") {
            driver.click("button[type=submit]").await;
            // One click per page: wait for the navigation it starts.
            for _ in 0..50 {
                if driver.url().await != url {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn op_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}
