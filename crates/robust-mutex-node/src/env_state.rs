//! Whether this thread's Node environment is shutting down (a worker being terminated, the
//! process exiting), for a native call that blocks the JS thread (`lockSync`).
//!
//! Node-API has no direct query, but every call that may run JavaScript first checks that the
//! environment can still call into JS and answers `napi_pending_exception` once it is stopping
//! (`worker.terminate()` sets that flag from the parent thread at once). Setting a property on
//! a fresh plain object is such a call and runs no user code.

use std::ptr;

use napi::{sys, Env};

/// True once the environment is stopping (or the probe itself fails: then JS cannot run either).
pub(crate) fn stopping(env: &Env) -> bool {
    let raw = env.raw();
    let mut object = ptr::null_mut();
    let mut value = ptr::null_mut();
    // SAFETY: `raw` is the environment of the running native call; the out-pointers are valid.
    unsafe {
        if sys::napi_create_object(raw, &mut object) != sys::Status::napi_ok
            || sys::napi_get_boolean(raw, true, &mut value) != sys::Status::napi_ok
        {
            return true;
        }
        sys::napi_set_named_property(raw, object, c"probe".as_ptr(), value) != sys::Status::napi_ok
    }
}
