//! Cross-service tests: the whole platform in one process on free ports, driven by real clients.

mod metering;
mod oauth_sdk;
mod platform;
mod smoke;
