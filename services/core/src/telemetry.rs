//! Logs, traces and metrics, set up once per process.
//!
//! - Logs: `tracing` with JSON or pretty output, filtered by `RUST_LOG` or `telemetry.log_filter`.
//! - Traces and metrics: exported over OTLP/HTTP when `telemetry.otlp_endpoint`
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT`) is set.
//! - Metrics: instrumented with the `metrics` facade and always rendered as Prometheus text for
//!   `/metrics`; mirrored to OpenTelemetry instruments when OTLP is on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

mod span_fields;
use span_fields::SpanJsonFields;

/// Latency buckets (seconds) shared by every request-duration histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Keeps exporters alive; flushes them on drop (process exit).
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter.take() {
            let _ = meter.shutdown();
        }
    }
}

/// The Prometheus side of the process's metrics recorder. The `metrics` facade has a single
/// process-wide recorder by design, so the handle to render it is process-wide too; everything
/// else (state, pools, config) is passed explicitly.
static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets (see [`spawn_upkeep`]).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Handle that renders the process's metrics as Prometheus text. Installs a recorder (without OTLP
/// mirroring) if `init` was not called, e.g. in tests that build services directly.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = prometheus_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); rendering ours is then empty
        // but harmless.
        let _ = metrics::set_global_recorder(FanoutRecorder {
            prometheus: recorder,
            otel: None,
        });
        spawn_upkeep(handle.clone(), UPKEEP_EVERY);
        handle
    })
}

/// Folds the recorder's histogram samples into their buckets every `every`, on a thread of its
/// own (it needs no runtime, and lives as long as the process). A recorder built with
/// `build_recorder` keeps every sample until upkeep or a scrape drains it: without this, a process
/// nobody scrapes would grow by a few bytes per observed request, forever.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started: histograms drain only when scraped");
    }
}

/// The JSON log format: one line per event, its fields at the top level, with the current span's
/// fields (kept by [`SpanJsonFields`]) under `span`. Public so that tests can capture exactly
/// what a service logs.
pub fn json_log_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .fmt_fields(SpanJsonFields)
        .with_writer(writer)
}

fn prometheus_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .expect("non-empty buckets")
        .build_recorder()
}

/// Sets up logging, tracing and metrics for the process. Call once, first thing in `main` after
/// configuration is loaded; keep the guard until exit.
pub fn init(cfg: &TelemetryConfig, service: &str) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_filter))
        .map_err(|e| anyhow::anyhow!("telemetry.log_filter: {e}"))?;
    let service_name = if cfg.service_name.is_empty() || cfg.service_name == "gatehouse" {
        format!("gatehouse-{service}")
    } else {
        cfg.service_name.clone()
    };
    let resource = Resource::builder()
        .with_service_name(service_name.clone())
        .build();

    let (tracer_provider, meter_provider) = if cfg.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let base = cfg.otlp_endpoint.trim_end_matches('/');
        use opentelemetry_otlp::WithExportConfig;
        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(span_exporter)
            .with_resource(resource.clone())
            .build();
        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/metrics"))
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let meter = SdkMeterProvider::builder()
            .with_periodic_exporter(metric_exporter)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        (Some(tracer), Some(meter))
    };

    let fmt_layer = match cfg.log_format {
        LogFormat::Json => json_log_layer(std::io::stdout).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let otel_layer = tracer_provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("gatehouse")));
    // A second init in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();

    let otel = meter_provider.as_ref().map(|p| {
        use opentelemetry::metrics::MeterProvider as _;
        p.meter("gatehouse")
    });
    let prometheus = prometheus_recorder();
    let handle = prometheus.handle();
    if metrics::set_global_recorder(FanoutRecorder { prometheus, otel }).is_ok()
        && PROMETHEUS.set(handle.clone()).is_ok()
    {
        spawn_upkeep(handle, UPKEEP_EVERY);
    }
    tracing::debug!(service = %service_name, otlp = !cfg.otlp_endpoint.is_empty(), "telemetry ready");
    Ok(TelemetryGuard {
        tracer: tracer_provider,
        meter: meter_provider,
    })
}

/// Forwards every metric to the Prometheus recorder and, when OTLP is on, to OpenTelemetry.
struct FanoutRecorder {
    prometheus: PrometheusRecorder,
    otel: Option<opentelemetry::metrics::Meter>,
}

fn otel_attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_owned(), l.value().to_owned()))
        .collect()
}

impl Recorder for FanoutRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let prom = self.prometheus.register_counter(key, metadata);
        match &self.otel {
            None => prom,
            Some(meter) => Counter::from_arc(Arc::new(FanCounter {
                prom,
                otel: meter.u64_counter(key.name().to_owned()).build(),
                attrs: otel_attributes(key),
                last_absolute: AtomicU64::new(0),
            })),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let prom = self.prometheus.register_gauge(key, metadata);
        match &self.otel {
            None => prom,
            Some(meter) => Gauge::from_arc(Arc::new(FanGauge {
                prom,
                otel: meter.f64_gauge(key.name().to_owned()).build(),
                attrs: otel_attributes(key),
                value: AtomicU64::new(0f64.to_bits()),
            })),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let prom = self.prometheus.register_histogram(key, metadata);
        match &self.otel {
            None => prom,
            Some(meter) => Histogram::from_arc(Arc::new(FanHistogram {
                prom,
                otel: meter.f64_histogram(key.name().to_owned()).build(),
                attrs: otel_attributes(key),
            })),
        }
    }
}

struct FanCounter {
    prom: Counter,
    otel: opentelemetry::metrics::Counter<u64>,
    attrs: Vec<KeyValue>,
    last_absolute: AtomicU64,
}

impl CounterFn for FanCounter {
    fn increment(&self, value: u64) {
        self.prom.increment(value);
        self.otel.add(value, &self.attrs);
    }

    fn absolute(&self, value: u64) {
        self.prom.absolute(value);
        let previous = self.last_absolute.swap(value, Ordering::Relaxed);
        if value > previous {
            self.otel.add(value - previous, &self.attrs);
        }
    }
}

struct FanGauge {
    prom: Gauge,
    otel: opentelemetry::metrics::Gauge<f64>,
    attrs: Vec<KeyValue>,
    value: AtomicU64,
}

impl FanGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut current = self.value.load(Ordering::Relaxed);
        loop {
            let next = f(f64::from_bits(current));
            match self.value.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.otel.record(next, &self.attrs);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

impl GaugeFn for FanGauge {
    fn increment(&self, value: f64) {
        self.prom.increment(value);
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.prom.decrement(value);
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.prom.set(value);
        self.update(|_| value);
    }
}

struct FanHistogram {
    prom: Histogram,
    otel: opentelemetry::metrics::Histogram<f64>,
    attrs: Vec<KeyValue>,
}

impl HistogramFn for FanHistogram {
    fn record(&self, value: f64) {
        self.prom.record(value);
        self.otel.record(value, &self.attrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    #[test]
    fn histogram_samples_do_not_pile_up_when_nobody_scrapes() {
        let recorder = prometheus_recorder();
        spawn_upkeep(recorder.handle(), Duration::from_millis(10));
        let key = Key::from_name("gatehouse_test_request_duration_seconds");
        let metadata = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        let histogram = recorder.register_histogram(&key, &metadata);
        let batch = |n: usize| {
            for i in 0..n {
                histogram.record((i % 100) as f64 / 1000.0);
            }
            // Long enough for several upkeep rounds.
            std::thread::sleep(Duration::from_millis(100));
        };
        // 3,000,000 samples: kept until drained, they would hold more than 24 MB.
        batch(300_000);
        let after_first = resident_kb();
        for _ in 0..9 {
            batch(300_000);
        }
        let grown_kb = resident_kb().saturating_sub(after_first);
        assert!(
            grown_kb < 8 * 1024,
            "resident memory grew by {grown_kb} kB over 2,700,000 samples nobody scraped"
        );
    }
}
