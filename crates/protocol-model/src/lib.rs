//! A model of the protocol on the robust mutex's lock word, checked with `loom`: see the
//! crate's `README.md`. The model lives in `tests/` (it needs `loom`, a dev-dependency).
