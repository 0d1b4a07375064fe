//! No Docker engine runs on this machine, so the packaging is checked against the code instead:
//! every environment variable the Dockerfile, compose file and Kubernetes manifests set is a real
//! setting (and the values they set validate), ports and health paths match what the services
//! serve, every command is a real subcommand, and `kubectl kustomize infra/k8s` renders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gatehouse_core::config::{Component, Config, ENV_ALIASES, Sources, env_var_for, setting_keys};
use gatehouse_http::ops::{HEALTHZ_PATH, READYZ_PATH};
use yaml_serde::Value;

use crate::gatehouse;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every environment variable the configuration reads.
fn known_env_vars() -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = setting_keys().iter().map(|k| env_var_for(k)).collect();
    vars.extend(ENV_ALIASES.iter().map(|(v, _)| (*v).to_owned()));
    vars.insert("GATEHOUSE_CONFIG".to_owned());
    vars
}

/// The subcommands the binary really has, from its own help.
fn subcommands() -> BTreeSet<String> {
    let out = gatehouse().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The port each service listens on by default, from the built-in configuration.
fn default_ports() -> BTreeMap<&'static str, u16> {
    let cfg = Config::load(&Sources::default()).unwrap();
    BTreeMap::from([
        ("control-api", cfg.control_api.listen.port()),
        ("dataplane", cfg.dataplane.listen.port()),
        ("usage-worker", cfg.usage_worker.listen.port()),
    ])
}

/// The internal listener's default port of each service that has one besides its public listener
/// (`/internal`, `/metrics`): never published, never behind a public Service.
fn default_internal_ports() -> BTreeMap<&'static str, u16> {
    let cfg = Config::load(&Sources::default()).unwrap();
    BTreeMap::from([
        ("control-api", cfg.control_api.internal_listen.port()),
        ("dataplane", cfg.dataplane.internal_listen.port()),
    ])
}

/// The port of the control API URL the dataplane is configured with: the control API's internal
/// listener, never its public one.
fn assert_dataplane_reads_the_internal_listener(control_api_url: &str) {
    let url = url::Url::parse(control_api_url).unwrap();
    assert_eq!(
        url.port_or_known_default(),
        Some(default_internal_ports()["control-api"]),
        "dataplane.control_api_url {control_api_url} is not the control API's internal listener"
    );
}

fn component(service: &str) -> Component {
    match service {
        "control-api" => Component::ControlApi,
        "dataplane" => Component::Dataplane,
        "usage-worker" => Component::UsageWorker,
        "migrate" => Component::Migrate,
        other => panic!("unknown service {other}"),
    }
}

/// The secrets each service is given: the control API the platform's keys and the dataplane
/// secret, a dataplane only the dataplane secret, everything else none.
fn assert_only_its_secrets(service: &str, env: &BTreeMap<String, String>) {
    let given: BTreeSet<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("GATEHOUSE_SECRETS__"))
        .collect();
    let expected: BTreeSet<&str> = match service {
        "control-api" => BTreeSet::from([
            "GATEHOUSE_SECRETS__ENCRYPTION_KEYS",
            "GATEHOUSE_SECRETS__SIGNING_SECRET",
            "GATEHOUSE_SECRETS__DATAPLANE_SECRET",
        ]),
        "dataplane" => BTreeSet::from(["GATEHOUSE_SECRETS__DATAPLANE_SECRET"]),
        _ => BTreeSet::new(),
    };
    assert_eq!(given, expected, "{service} is given exactly the secrets it needs");
}

/// Loads and validates the configuration `env` gives `service` (values as the container sees them).
fn validate_env(service: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    let overrides = env
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("GATEHOUSE_")?;
            (key != "CONFIG").then(|| (key.to_ascii_lowercase().replace("__", "."), v.clone()))
        })
        .collect();
    let cfg = Config::load(&Sources {
        files: vec![],
        overrides,
    })
    .map_err(|e| e.to_string())?;
    cfg.validate(component(service)).map_err(|e| e.to_string())
}

#[test]
fn subcommands_are_the_documented_ones() {
    let commands = subcommands();
    for expected in [
        "control-api",
        "dataplane",
        "usage-worker",
        "migrate",
        "openapi",
        "up",
        "healthcheck",
    ] {
        assert!(
            commands.contains(expected),
            "missing subcommand {expected}: {commands:?}"
        );
    }
}

#[test]
fn dockerfile_matches_the_binary() {
    let dockerfile = read("infra/Dockerfile");
    let known = known_env_vars();
    let commands = subcommands();
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage build"
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER set");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as root: {user}"
    );
    let healthcheck = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK present");
    let cmd = healthcheck.split("CMD").nth(1).expect("HEALTHCHECK CMD");
    let args: Vec<String> = yaml_serde::from_str(cmd.trim()).expect("HEALTHCHECK CMD in exec form");
    assert_eq!(args[0], "gatehouse");
    assert!(
        commands.contains(&args[1]),
        "HEALTHCHECK runs unknown subcommand {}",
        args[1]
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"gatehouse\"]"));
    // ENV lines (with continuations) set only known settings, listening on the default ports.
    let env_block: String = dockerfile
        .split("\nENV ")
        .skip(1)
        .map(|rest| {
            let mut block = String::new();
            for line in rest.lines() {
                block.push_str(line.trim_end_matches('\\'));
                block.push(' ');
                if !line.trim_end().ends_with('\\') {
                    break;
                }
            }
            block
        })
        .collect();
    let mut env = BTreeMap::new();
    for pair in env_block.split_whitespace() {
        let (k, v) = pair.split_once('=').expect("ENV key=value");
        assert!(known.contains(k), "Dockerfile sets unknown setting {k}");
        env.insert(k.to_owned(), v.to_owned());
    }
    let ports = default_ports();
    for (service, port) in &ports {
        let var = format!(
            "GATEHOUSE_{}__LISTEN",
            service.to_ascii_uppercase().replace('-', "_")
        );
        assert_eq!(
            env.get(&var).map(String::as_str),
            Some(format!("0.0.0.0:{port}").as_str()),
            "{var}"
        );
        assert!(dockerfile.contains(&format!("{port}")), "EXPOSE {port}");
    }
    for (service, port) in default_internal_ports() {
        let var = format!(
            "GATEHOUSE_{}__INTERNAL_LISTEN",
            service.to_ascii_uppercase().replace('-', "_")
        );
        assert_eq!(
            env.get(&var).map(String::as_str),
            Some(format!("0.0.0.0:{port}").as_str()),
            "{var}"
        );
    }
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    let exposed: BTreeSet<u16> = expose.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(exposed, ports.values().copied().collect());
}

/// Replaces `${VAR:-default}` / `${VAR:?message}` / `${VAR}` interpolation with example values.
fn interpolate(value: &str) -> String {
    let examples: BTreeMap<&str, &str> = BTreeMap::from([
        ("GATEHOUSE_SERVICE_DB_PASSWORD", "svc-password"),
        ("POSTGRES_PASSWORD", "owner-password"),
        (
            "GATEHOUSE_ENCRYPTION_KEYS",
            "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        (
            "GATEHOUSE_SIGNING_SECRET",
            "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZw==",
        ),
        (
            "GATEHOUSE_DATAPLANE_SECRET",
            "ZGF0YXBsYW5lLXNlY3JldC1mb3ItdGVzdHMtb25seS0zMi1ieXRlcy1sb25n",
        ),
    ]);
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed interpolation") + start;
        let expr = &rest[start + 2..end];
        let (var, default) = match expr.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (expr.split(":?").next().unwrap(), None),
        };
        let value = examples
            .get(var)
            .map(|s| s.to_string())
            .or(default.map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn compose_matches_the_binary() {
    let mut compose: Value = yaml_serde::from_str(&read("infra/docker-compose.yml")).unwrap();
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<String> = services.keys().map(scalar).collect();
    for expected in [
        "postgres",
        "redis",
        "mailpit",
        "migrate",
        "control-api",
        "dataplane",
        "usage-worker",
        "otel-collector",
    ] {
        assert!(names.contains(expected), "compose lacks {expected}");
    }
    assert_eq!(
        compose["services"]["otel-collector"]["profiles"][0].as_str(),
        Some("otel"),
        "the collector is optional (profile otel)"
    );
    let known = known_env_vars();
    let commands = subcommands();
    let ports = default_ports();
    for (name, service) in services {
        let name = scalar(name);
        // depends_on conditions refer to services that can satisfy them.
        if let Some(deps) = service["depends_on"].as_mapping() {
            for (dep, cond) in deps {
                let dep = scalar(dep);
                let condition = cond["condition"].as_str().expect("depends_on with a condition");
                match condition {
                    "service_healthy" => assert!(
                        !compose["services"][dep.as_str()]["healthcheck"].is_null(),
                        "{name} waits for {dep} to be healthy, which has no healthcheck"
                    ),
                    "service_completed_successfully" => assert_eq!(dep, "migrate"),
                    other => panic!("{name}: unexpected condition {other}"),
                }
            }
        }
        let is_gatehouse = service["image"].as_str().is_some_and(|i| i.contains("gatehouse"));
        if !is_gatehouse {
            continue;
        }
        let command: Vec<String> = service["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(scalar)
            .collect();
        assert!(
            commands.contains(&command[0]),
            "{name} runs unknown subcommand {}",
            command[0]
        );
        if let Some(test) = service["healthcheck"]["test"].as_sequence() {
            let test: Vec<String> = test.iter().map(scalar).collect();
            assert_eq!(test[..2], ["CMD".to_owned(), "gatehouse".to_owned()]);
            assert!(
                commands.contains(&test[2]),
                "{name} healthcheck runs unknown subcommand"
            );
        }
        let mut env = BTreeMap::new();
        for (k, v) in service["environment"].as_mapping().expect("environment mapping") {
            let k = scalar(k);
            assert!(
                known.contains(&k),
                "compose service {name} sets unknown setting {k}"
            );
            env.insert(k, interpolate(&scalar(v)));
        }
        // The Dockerfile's listen addresses apply inside the container.
        for (service, port) in &ports {
            env.entry(format!(
                "GATEHOUSE_{}__LISTEN",
                service.to_ascii_uppercase().replace('-', "_")
            ))
            .or_insert(format!("0.0.0.0:{port}"));
        }
        for (service, port) in default_internal_ports() {
            env.entry(format!(
                "GATEHOUSE_{}__INTERNAL_LISTEN",
                service.to_ascii_uppercase().replace('-', "_")
            ))
            .or_insert(format!("0.0.0.0:{port}"));
        }
        validate_env(&command[0], &env).unwrap_or_else(|e| panic!("compose service {name}: {e}"));
        assert_only_its_secrets(&command[0], &env);
        if command[0] == "dataplane" {
            assert_dataplane_reads_the_internal_listener(&env["GATEHOUSE_DATAPLANE__CONTROL_API_URL"]);
        }
        // Compose waits stop_grace_period (10 s unless set) before SIGKILL: longer than the drain
        // of every service (`migrate` runs once and does not drain).
        let grace: u64 = env
            .get("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS")
            .map_or(30, |g| g.parse().unwrap());
        let stop_grace: u64 = service["stop_grace_period"]
            .as_str()
            .and_then(|s| s.strip_suffix('s'))
            .map_or(10, |s| s.parse().unwrap());
        assert!(
            command[0] == "migrate" || stop_grace > grace,
            "compose service {name}: stop_grace_period {stop_grace}s, drain grace {grace}s"
        );
        if let Some(published) = service["ports"].as_sequence() {
            let port = ports[command[0].as_str()];
            for mapping in published {
                let mapping = scalar(mapping);
                assert!(
                    mapping.ends_with(&format!(":{port}")),
                    "{name} publishes {mapping}, listens on {port}"
                );
            }
        }
    }
}

#[test]
fn kubernetes_manifests_render_and_match_the_binary() {
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", repo().join("infra/k8s").to_str().unwrap()])
        .output()
        .expect("kubectl is needed to render infra/k8s (install kubectl)");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = rendered
        .split("\n---\n")
        .map(|d| yaml_serde::from_str(d).unwrap())
        .collect();
    let kinds: Vec<(String, String)> = docs
        .iter()
        .map(|d| (scalar(&d["kind"]), scalar(&d["metadata"]["name"])))
        .collect();
    for expected in [
        ("Deployment", "control-api"),
        ("Deployment", "dataplane"),
        ("Deployment", "usage-worker"),
        ("Service", "control-api"),
        ("Service", "control-api-internal"),
        ("Service", "dataplane"),
        ("Service", "usage-worker"),
        ("Job", "gatehouse-migrate"),
        ("HorizontalPodAutoscaler", "dataplane"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "missing {expected:?} in {kinds:?}"
        );
    }
    let known = known_env_vars();
    let commands = subcommands();
    let ports = default_ports();
    let config: BTreeMap<String, String> = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .map(|d| {
            d["data"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| (scalar(k), scalar(v)))
                .collect()
        })
        .expect("a ConfigMap");
    for key in config.keys() {
        assert!(known.contains(key), "ConfigMap sets unknown setting {key}");
    }
    // The public Services carry the public port only; the internal listener has its own
    // in-cluster Service, which the dataplanes use.
    let internal_ports = default_internal_ports();
    for doc in docs.iter().filter(|d| d["kind"].as_str() == Some("Service")) {
        let name = scalar(&doc["metadata"]["name"]);
        let service_ports: Vec<u16> = doc["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap() as u16)
            .collect();
        let expected = match name.as_str() {
            "control-api-internal" => internal_ports["control-api"],
            public => ports[public],
        };
        assert_eq!(service_ports, [expected], "Service {name} ports");
        assert!(
            doc["spec"]["type"].as_str().is_none_or(|t| t == "ClusterIP"),
            "Service {name} is in-cluster"
        );
    }
    let control_api_url = &config["GATEHOUSE_DATAPLANE__CONTROL_API_URL"];
    assert!(
        control_api_url.starts_with("http://control-api-internal."),
        "{control_api_url}"
    );
    assert_dataplane_reads_the_internal_listener(control_api_url);
    let secrets_doc = read("infra/k8s/README.md");
    for doc in &docs {
        let kind = scalar(&doc["kind"]);
        if kind != "Deployment" && kind != "Job" {
            continue;
        }
        let pod = &doc["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{kind} runs as non-root"
        );
        for container in pod["containers"].as_sequence().unwrap() {
            let args: Vec<String> = container["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(scalar)
                .collect();
            assert!(
                commands.contains(&args[0]),
                "{kind} runs unknown subcommand {}",
                args[0]
            );
            assert!(
                !container["resources"]["requests"].is_null(),
                "{kind}: resources.requests"
            );
            let mut env = config.clone();
            for var in container["env"]
                .as_sequence()
                .map(|s| s.as_slice())
                .unwrap_or_default()
            {
                let name = scalar(&var["name"]);
                assert!(
                    known.contains(&name),
                    "{kind} {} sets unknown setting {name}",
                    args[0]
                );
                if let Some(secret) = var["valueFrom"]["secretKeyRef"]["name"].as_str() {
                    assert!(
                        args[0] != "dataplane" || secret == "gatehouse-dataplane-secrets",
                        "the dataplane reads {name} from {secret}, not from its own Secret"
                    );
                }
                let value = match var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                    Some(key) => {
                        assert!(
                            secrets_doc.contains(&format!("`{key}`")),
                            "secret key {key} undocumented"
                        );
                        // An example value of the right shape for validation.
                        match key {
                            "database-url" => "postgres://gatehouse_svc:pw@postgres:5432/gatehouse".into(),
                            "database-admin-url" => {
                                "postgres://gatehouse_owner:pw@postgres:5432/gatehouse".into()
                            }
                            "redis-url" => "redis://redis:6379".into(),
                            "encryption-keys" => "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
                            "signing-secret" => {
                                "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZw==".into()
                            }
                            "dataplane-secret" => {
                                "ZGF0YXBsYW5lLXNlY3JldC1mb3ItdGVzdHMtb25seS0zMi1ieXRlcy1sb25n".into()
                            }
                            "smtp-url" => "smtp://smtp.example.com:587".into(),
                            other => panic!("no example for secret key {other}"),
                        }
                    }
                    None => scalar(&var["value"]),
                };
                env.insert(name, value);
            }
            validate_env(&args[0], &env).unwrap_or_else(|e| panic!("{kind} {}: {e}", args[0]));
            assert_only_its_secrets(&args[0], &env);
            if kind == "Deployment" {
                let port = container["ports"][0]["containerPort"].as_u64().unwrap() as u16;
                assert_eq!(port, ports[args[0].as_str()], "{} containerPort", args[0]);
                let metrics_port = internal_ports.get(args[0].as_str()).copied().unwrap_or(port);
                assert_eq!(
                    doc["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as_str(),
                    Some(metrics_port.to_string().as_str()),
                    "{} is scraped on its internal listener",
                    args[0]
                );
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["path"].as_str(),
                    Some(HEALTHZ_PATH)
                );
                assert_eq!(
                    container["readinessProbe"]["httpGet"]["path"].as_str(),
                    Some(READYZ_PATH)
                );
                let grace: u64 = config["GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS"].parse().unwrap();
                // preStop runs before SIGTERM, on the same clock.
                let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                    .as_u64()
                    .unwrap_or(0);
                assert!(
                    pod["terminationGracePeriodSeconds"].as_u64().unwrap() > pre_stop + grace,
                    "Kubernetes must wait longer than preStop and the drain grace period together"
                );
                // Services clients reach through a load balancer wait for it to stop sending
                // before they drain.
                if ["control-api", "dataplane"].contains(&args[0].as_str()) {
                    assert!(pre_stop > 0, "{}: a preStop sleep", args[0]);
                }
            }
        }
    }
}
