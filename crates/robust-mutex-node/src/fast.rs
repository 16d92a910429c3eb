//! The two calls of the uncontended path, `tryLockFast(handle)` and
//! `releaseFast(handle, token)`, as raw Node-API callbacks.
//!
//! napi-rs wraps every generated function with per-call bookkeeping (borrow scopes, allocation)
//! that costs ~150 ns, more than the whole lock/unlock pair. These two read their arguments and
//! return a number directly; everything else stays on the generated path. Same semantics and
//! errors as `tryLock` / `release` (declared for TypeScript in `index.ts`). `releaseFast` never
//! poisons: a poisoning release is rare and goes through the generated `release(handle, token,
//! true)`, so the common one reads no third argument (a boolean conversion, ~3% of the pair).
//! `tryLockAfterWaitFast(handle)`, the trylock after a watch, shares `tryLockFast`'s body.
//! Where the thread has a call slot (`call_slot.rs`, everywhere but where external buffers are
//! refused), `index.ts` uses its twins `tryLockSlot`/`releaseSlot` instead, which take no
//! Node-API arguments at all.

use std::ffi::{c_char, CString};
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::errors::Fallible;

/// Reads up to N arguments of the current call.
///
/// # Safety
/// `env` and `info` must be the ones Node passed to the running callback.
pub(crate) unsafe fn args<const N: usize>(env: sys::napi_env, info: sys::napi_callback_info) -> [sys::napi_value; N] {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    // SAFETY: argv has room for argc values; the other out-pointers may be null.
    unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()) };
    if argc < N {
        // Missing arguments read as undefined; the conversions below then fail with EINVAL.
        for slot in argv.iter_mut().skip(argc) {
            // SAFETY: env is live (caller's contract).
            unsafe { sys::napi_get_undefined(env, slot) };
        }
    }
    argv
}

/// # Safety
/// `env` and `value` must belong to the running callback.
pub(crate) unsafe fn number(env: sys::napi_env, value: sys::napi_value) -> Option<f64> {
    let mut out = 0.0;
    // SAFETY: out is a valid f64; a non-number reports napi_number_expected.
    (unsafe { sys::napi_get_value_double(env, value, &mut out) } == sys::Status::napi_ok).then_some(out)
}

/// Throws `err` (whose message is "CODE: text") with its code set, and returns no value.
///
/// # Safety
/// `env` must belong to the running callback.
pub(crate) unsafe fn throw(env: sys::napi_env, err: napi::Error) -> sys::napi_value {
    let message = CString::new(err.reason.replace('\0', " ")).unwrap_or_default();
    let code = err.reason.split(':').next().and_then(|c| CString::new(c).ok());
    let code_ptr: *const c_char = code.as_ref().map_or(ptr::null(), |c| c.as_ptr());
    // SAFETY: both strings are NUL-terminated and live across the call.
    unsafe { sys::napi_throw_error(env, code_ptr, message.as_ptr()) };
    ptr::null_mut()
}

/// No panic may unwind into Node (that aborts the process): it becomes an exception.
#[inline(always)]
pub(crate) fn guarded<T, E: From<napi::Error>>(
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(napi::bindgen_prelude::panic_to_error(payload).into()))
}

pub(crate) fn handle_arg(value: Option<f64>) -> Result<u32> {
    match value {
        Some(v) if (0.0..=u32::MAX as f64).contains(&v) && (v as u32) as f64 == v => Ok(v as u32),
        _ => Err(crate::errors::coded("EINVAL", "the mutex handle must be a handle number")),
    }
}

/// The body of both raw trylocks: one handle argument, a lock token (0: held elsewhere) back.
///
/// # Safety
/// `env` and `info` must be the ones Node passed to the running callback.
#[inline(always)]
unsafe fn try_lock_with(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    try_lock: fn(sys::napi_env, u32) -> Fallible<f64>,
) -> sys::napi_value {
    // SAFETY: env/info come from Node for this callback (caller's contract).
    let [handle] = unsafe { args::<1>(env, info) };
    // SAFETY: as above.
    let handle = unsafe { number(env, handle) };
    let result = guarded(|| try_lock(env, handle_arg(handle)?));
    match result {
        Ok(token) => {
            let mut out = ptr::null_mut();
            // SAFETY: env is live; out receives the new number.
            unsafe { sys::napi_create_double(env, token, &mut out) };
            out
        }
        // SAFETY: env is live.
        Err(err) => unsafe { throw(env, *err) },
    }
}

unsafe extern "C" fn try_lock_fast(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: env/info come from Node for this callback.
    unsafe { try_lock_with(env, info, crate::mutex::try_lock_token) }
}

/// `tryLockAfterWaitFast(handle)`: the trylock a contended `lock()` makes on its JS thread after
/// its watch ended. It is on the handoff's path, where the generated `tryLockAfterWait` would pay
/// napi-rs's per-call bookkeeping; same semantics and errors.
unsafe extern "C" fn try_lock_after_wait_fast(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: env/info come from Node for this callback.
    unsafe { try_lock_with(env, info, crate::mutex::try_lock_after_wait_token) }
}

unsafe extern "C" fn release_fast(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: env/info come from Node for this callback.
    let [handle, token] = unsafe { args::<2>(env, info) };
    // SAFETY: env is live.
    let token = unsafe { number(env, token) }.unwrap_or(0.0);
    // SAFETY: as above.
    let handle = unsafe { number(env, handle) };
    let result: Fallible<()> =
        guarded(|| crate::mutex::release_token(handle_arg(handle)?, crate::token::Token::decode(token)?, false));
    match result {
        Ok(()) => ptr::null_mut(), // undefined
        // SAFETY: env is live.
        Err(err) => unsafe { throw(env, *err) },
    }
}

/// An empty raw callback: the benchmark's baseline for what a Node-API call costs by itself.
unsafe extern "C" fn noop_fast(_env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    ptr::null_mut()
}

/// Adds the raw fast-path functions to the module's exports (and `fenceSlot`, the buffer
/// through which every acquisition hands its fencing token over: see `fence.rs`; its call-slot
/// twins `tryLockSlot`/`releaseSlot`: see `call_slot.rs`; and
/// `stateInto`, `state()` as numbers: see `state_slots.rs`).
#[napi(module_exports)]
pub fn register_fast_path(exports: Object, env: Env) -> Result<()> {
    type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;
    let functions: [(&str, Callback); 8] = [
        ("tryLockFast", try_lock_fast),
        ("releaseFast", release_fast),
        ("noopFast", noop_fast),
        ("fenceSlot", crate::fence::fence_slot),
        ("stateInto", crate::state_slots::state_into),
        ("tryLockAfterWaitFast", try_lock_after_wait_fast),
        ("tryLockSlot", crate::call_slot::try_lock_slot),
        ("releaseSlot", crate::call_slot::release_slot),
    ];
    for (name, callback) in functions {
        let mut function = ptr::null_mut();
        // SAFETY: a plain native function with no data; the name is passed with its length.
        let status = unsafe {
            sys::napi_create_function(
                env.raw(),
                name.as_ptr().cast(),
                name.len() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut function,
            )
        };
        if status != sys::Status::napi_ok {
            return Err(Error::from_reason(format!("cannot create {name}")));
        }
        // SAFETY: `function` was just created in this env.
        let value = unsafe { Unknown::from_raw_unchecked(env.raw(), function) };
        let mut exports = exports;
        exports.set_named_property(name, value)?;
    }
    Ok(())
}
