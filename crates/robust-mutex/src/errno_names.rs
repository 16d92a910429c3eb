//! The names of error numbers (`"ENOENT"`), for `Error::code`: every number the platform names
//! gets its own name, so a code never changes when a new errno reaches a caller.

use std::collections::HashMap;
use std::sync::Mutex;

/// The platform's name of `errno`, or `"EUNKNOWN"`. Each distinct number's name is allocated
/// once for the life of the process (a few hundred numbers exist at most).
pub(crate) fn name(errno: i32) -> &'static str {
    static NAMES: Mutex<Option<HashMap<i32, &'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    names.get_or_insert_with(HashMap::new).entry(errno).or_insert_with(|| {
        // nix's Errno variants are the C names; numbers it does not know print as
        // `UnknownErrno`.
        let name = format!("{:?}", nix::errno::Errno::from_raw(errno));
        if name.starts_with('E') && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            Box::leak(name.into_boxed_str())
        } else {
            "EUNKNOWN"
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::Error;

    fn os(errno: i32) -> Error {
        Error::Os { op: "test", path: None, errno }
    }

    #[test]
    fn every_named_errno_has_its_own_code() {
        assert_eq!(os(libc::ENOENT).code(), "ENOENT");
        assert_eq!(os(libc::ENOTCONN).code(), "ENOTCONN");
        assert_eq!(os(libc::EHOSTUNREACH).code(), "EHOSTUNREACH");
        assert_eq!(os(libc::ENOTCONN).code(), "ENOTCONN", "stable on a second call");
        assert_eq!(os(100_000).code(), "EUNKNOWN");
    }

    #[test]
    fn errors_convert_to_io_errors_of_the_closest_kind() {
        let io: std::io::Error = os(libc::EACCES).into();
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(io.to_string().contains("EACCES"), "{io}");
        let io: std::io::Error = Error::Timeout.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    }
}
