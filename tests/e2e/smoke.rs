//! The three services start together and report ready; metrics are served by the internal
//! listeners only (the usage worker has no other).

use crate::platform::Platform;

#[tokio::test]
async fn all_services_ready() {
    let platform = Platform::start().await;
    for base in [&platform.control_api, &platform.dataplane, &platform.worker] {
        let health = platform.http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "{base}/healthz");
    }
    for base in [
        &platform.control_api_internal,
        &platform.dataplane_internal,
        &platform.worker,
    ] {
        let metrics = platform.http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(metrics.status(), 200);
        assert!(
            metrics.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
    for base in [&platform.control_api, &platform.dataplane] {
        let metrics = platform.http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(metrics.status(), 404, "{base}/metrics is internal");
    }
}
