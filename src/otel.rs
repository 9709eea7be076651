//! Traces over OTLP (the feature `otel`): when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, every span of the process — a `request` span
//! per request with its request id, path, status and outcome, and a `core.apply` span for the
//! core's action inside it — is exported in batches to that OpenTelemetry collector over HTTP,
//! as protobuf or, with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`, JSON. The OpenTelemetry SDK
//! reads its other standard variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, …).

use anyhow::{Context as _, Result, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The exporter, to flush at exit.
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Export what is still buffered, then stop (off the async runtime: the exporter's HTTP
    /// client blocks).
    pub async fn shutdown(self) {
        let provider = self.0;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "the last traces could not be exported");
        }
    }
}

/// Whether traces are asked for: an OTLP endpoint is set and the SDK is not disabled.
fn wanted() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && std::env::var("OTEL_SDK_DISABLED").map_or(true, |v| !v.eq_ignore_ascii_case("true"))
}

/// The tracing layer exporting spans, and what flushes it; `None` when no endpoint is set.
pub fn layer<S>() -> Result<Option<(impl Layer<S>, Traces)>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    if !wanted() {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not built in: use http/protobuf or http/json \
             (the collector's port 4318)"
        ),
    };
    // The exporter's blocking HTTP client must not be made (or dropped) on the async runtime.
    let exporter = std::thread::spawn(move || {
        SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the OTLP exporter could not be built"))?
    .context("the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("oidc-logout").build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("oidc-logout"));
    Ok(Some((layer, Traces(provider))))
}
