//! Helpers for interpreting configured values.

use std::path::{Path, PathBuf};

/// Decodes `%XX` escapes in the user info of a configured URL (database and SMTP passwords often
/// contain reserved characters). Invalid escapes are kept as written.
pub fn decode_userinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A directory relative to the current directory unless absolute.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_decoding() {
        assert_eq!(decode_userinfo("p%40ss%2Fword"), "p@ss/word");
        assert_eq!(decode_userinfo("plain"), "plain");
        assert_eq!(decode_userinfo("100%"), "100%");
        assert_eq!(decode_userinfo("bad%zz"), "bad%zz");
    }
}
