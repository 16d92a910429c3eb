//! Whether this thread's Node environment is shutting down (a worker being terminated, the
//! process exiting), for a native call that blocks the JS thread (`lockSync`).
//!
//! Node-API has no direct query, but every call that may run JavaScript first checks that the
//! environment can still call into JS and answers `napi_pending_exception` once it is stopping
//! (`worker.terminate()` sets that flag from the parent thread at once). Defining an own data
//! property on a fresh object is such a call that runs no JavaScript at all: unlike a plain set,
//! it consults no setter or Proxy on `Object.prototype`, so no user code runs inside the wait.

use std::ptr;

use napi::{sys, Env};

/// True once the environment is stopping (or the probe itself fails: then JS cannot run either).
pub(crate) fn stopping(env: &Env) -> bool {
    let raw = env.raw();
    let mut object = ptr::null_mut();
    let mut value = ptr::null_mut();
    // SAFETY: `raw` is the environment of the running native call; the out-pointers are valid.
    let created = unsafe {
        sys::napi_create_object(raw, &mut object) == sys::Status::napi_ok
            && sys::napi_get_boolean(raw, true, &mut value) == sys::Status::napi_ok
    };
    if !created {
        return true;
    }
    let property = sys::napi_property_descriptor {
        utf8name: c"probe".as_ptr(),
        name: ptr::null_mut(),
        method: None,
        getter: None,
        setter: None,
        value,
        attributes: sys::PropertyAttributes::default,
        data: ptr::null_mut(),
    };
    // SAFETY: one valid descriptor (a NUL-terminated name and a value of this env) for a fresh
    // object of this env.
    unsafe { sys::napi_define_properties(raw, object, 1, &property) != sys::Status::napi_ok }
}
