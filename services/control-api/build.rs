//! Builds the web console (`web/`, a Vite app) and embeds it in the binary: `src/console.rs`
//! includes the generated `console_assets.rs`. Building it needs Node.js with npm; `npm ci` runs
//! here when `web/node_modules` is absent. With `CONSOLE_DIST=<dir>` an already built console
//! (e.g. from the Docker image's node stage) is embedded instead. When the console cannot be built,
//! the binary is still built and serves a page saying how to build the console (and cargo warns).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let web = manifest.join("../../web");
    println!("cargo:rerun-if-env-changed=CONSOLE_DIST");
    let dist = match env::var_os("CONSOLE_DIST") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            Ok(dir)
        }
        None => build_console(&web, &out.join("console")),
    };
    let (files, note) = match dist {
        Ok(dir) if dir.join("index.html").is_file() => (collect(&dir), String::new()),
        Ok(dir) => (Vec::new(), format!("{} has no index.html", dir.display())),
        Err(note) => (Vec::new(), note),
    };
    if files.is_empty() {
        println!("cargo:warning=the web console is not embedded: {note}");
    }
    write_table(&out, &files, &note);
}

/// Runs `npm ci` if needed, then `vite build` into `dest`. Err: why the console was not built.
fn build_console(web: &Path, dest: &Path) -> Result<PathBuf, String> {
    for input in [
        "index.html",
        "src",
        "public",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "node_modules/.package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    if !web.join("package.json").is_file() {
        return Err("web/package.json is missing".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("Node.js was not found when gatehouse was compiled".into());
    }
    if !web.join("node_modules/.package-lock.json").is_file() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(web)
            .status()
            .map_err(|e| format!("npm could not be run ({e})"))?;
        if !status.success() {
            return Err(format!("`npm ci` in web/ failed ({status})"));
        }
    }
    let output = Command::new("node")
        .arg("node_modules/vite/bin/vite.js")
        .args(["build", "--logLevel", "warn", "--emptyOutDir", "--outDir"])
        .arg(dest)
        .current_dir(web)
        .output()
        .map_err(|e| format!("vite could not be run ({e})"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("`vite build` failed: {first}"));
    }
    Ok(dest.to_path_buf())
}

struct File {
    url: String,
    path: PathBuf,
    gzip: Option<PathBuf>,
    content_type: &'static str,
}

fn collect(dist: &Path) -> Vec<File> {
    let gz_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("console-gz");
    let mut files = Vec::new();
    let mut stack = vec![dist.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dist).expect("under dist");
            let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            let content_type = content_type(&path);
            let body = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let gzip = (compressible(content_type) && body.len() > 1024).then(|| {
                let gz = gz_dir.join(format!("{}.gz", rel.to_string_lossy()));
                fs::create_dir_all(gz.parent().expect("parent")).expect("create gzip dir");
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(&body).expect("gzip");
                fs::write(&gz, enc.finish().expect("gzip")).expect("write gzip");
                gz
            });
            files.push(File {
                url,
                path,
                gzip,
                content_type,
            });
        }
    }
    files.sort_by(|a, b| a.url.cmp(&b.url));
    files
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/") || content_type.contains("json") || content_type.contains("svg")
}

fn write_table(out: &Path, files: &[File], note: &str) {
    let mut code = String::from("pub static EMBEDDED: &[Asset] = &[\n");
    for f in files {
        let gzip = match &f.gzip {
            Some(gz) => format!("Some(include_bytes!({:?}))", gz.display().to_string()),
            None => "None".to_owned(),
        };
        writeln!(
            code,
            "    Asset {{ path: {:?}, content_type: {:?}, body: include_bytes!({:?}), gzip: {gzip} }},",
            f.url,
            f.content_type,
            f.path.display().to_string()
        )
        .expect("write to string");
    }
    code.push_str("];\n");
    writeln!(
        code,
        "/// Why the console is not embedded (empty when it is).\npub const BUILD_NOTE: &str = {note:?};"
    )
    .expect("write to string");
    fs::write(out.join("console_assets.rs"), code).expect("write console_assets.rs");
}
