//! `stateInto(handle, slots)`: `state()` as numbers written into a `Float64Array` of the caller's,
//! as a raw Node-API callback; `index.ts` builds the `MutexState` object from them in one literal.
//!
//! The generated `state()` returned a `#[napi(object)]`: napi-rs then creates the object and sets
//! each of its 12 properties by name (a string internalised and a map transition per property,
//! per call), which was ~80% of what `state()` cost. Here the call converts nothing but the two
//! arguments, and the object is a literal V8 already knows the shape of.
//!
//! The array is read during this call only: no pointer into it is kept, and no JavaScript runs
//! while the slots are written, so nothing can detach or collect the buffer meanwhile.

use std::ffi::c_void;
use std::ptr;

use napi::sys;

use crate::fast::{args, guarded, handle_arg, number, throw};

/// How many 8-byte slots the caller's `Float64Array` must have (`STATE_SLOTS` in `index.ts`).
pub(crate) const STATE_SLOTS: usize = 10;

// Slot 0 holds these flags; slots 1-8 are numbers (exact: every field is below 2^53, see
// below); slot 9 holds the fencing token's 64 bits, read through a `BigUint64Array` over the
// same buffer.
const LOCKED: u32 = 1;
const ABANDONED: u32 = 2;
const POISONED: u32 = 4;
const HAS_HOLDER_TID: u32 = 8;
const HAS_OWNER: u32 = 16;
const HAS_SINCE: u32 = 32;

/// The snapshot in slot order. The counters are u64 in the header; they are returned as numbers
/// as the generated `state()` returned them (exact below 2^53, i.e. 285 years at a million
/// acquisitions a second).
fn slots(s: &robust_mutex::MutexState) -> ([f64; STATE_SLOTS - 1], u64) {
    let mut flags = 0;
    let mut set = |bit: u32, on: bool| flags |= if on { bit } else { 0 };
    set(LOCKED, s.locked);
    set(ABANDONED, s.abandoned);
    set(POISONED, s.poisoned);
    set(HAS_HOLDER_TID, s.holder_tid.is_some());
    set(HAS_OWNER, s.owner.is_some());
    let since_ms = s
        .owner
        .and_then(|o| o.since)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64() * 1000.0);
    set(HAS_SINCE, since_ms.is_some());
    let numbers = [
        f64::from(flags),
        f64::from(s.holder_tid.unwrap_or(0)),
        f64::from(s.owner.map_or(0, |o| o.pid)),
        f64::from(s.owner.map_or(0, |o| o.tid)),
        since_ms.unwrap_or(0.0),
        s.generation as f64,
        s.acquisitions as f64,
        s.contended as f64,
        s.owner_deaths as f64,
    ];
    (numbers, s.fencing_token)
}

/// The `Float64Array` argument's memory, if it is one with room for the slots.
///
/// # Safety
/// `env` and `value` must belong to the running callback. The pointer is valid only until
/// JavaScript runs again.
unsafe fn float64_slots(env: sys::napi_env, value: sys::napi_value) -> Option<*mut f64> {
    let mut is_typed = false;
    // SAFETY: env/value are the callback's; is_typed is a valid bool.
    if unsafe { sys::napi_is_typedarray(env, value, &mut is_typed) } != sys::Status::napi_ok || !is_typed {
        return None;
    }
    let mut kind = 0;
    let mut length = 0usize;
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `value` is a typed array; the out-pointers are valid or null.
    let status = unsafe {
        sys::napi_get_typedarray_info(env, value, &mut kind, &mut length, &mut data, ptr::null_mut(), ptr::null_mut())
    };
    // A Float64Array's offset into its buffer is a multiple of 8, so `data` is aligned for f64
    // and u64; a detached one reports no data.
    let usable = status == sys::Status::napi_ok
        && kind == sys::TypedarrayType::float64_array
        && length >= STATE_SLOTS
        && !data.is_null();
    usable.then_some(data.cast::<f64>())
}

/// `stateInto(handle, slots)`: fills `slots` (a `Float64Array` of at least `STATE_SLOTS`) and
/// returns undefined; a closed handle or a bad argument throws as the other calls do.
///
/// # Safety
/// Called by Node as a function callback: `env` and `info` are live.
pub(crate) unsafe extern "C" fn state_into(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: env/info come from Node for this callback.
    let [handle, target] = unsafe { args::<2>(env, info) };
    // SAFETY: as above.
    let handle = unsafe { number(env, handle) };
    // SAFETY: as above; the pointer is used below, before this callback returns.
    let Some(data) = (unsafe { float64_slots(env, target) }) else {
        let err = crate::errors::coded(
            "EINVAL",
            format!("stateInto needs a Float64Array of at least {STATE_SLOTS} elements"),
        );
        // SAFETY: env is live.
        return unsafe { throw(env, err) };
    };
    let state = guarded(|| handle_arg(handle).and_then(|h| crate::handles::with_handle(h, |h| Ok(h.mutex.state()))));
    match state {
        Ok(state) => {
            let (numbers, token) = slots(&state);
            // SAFETY: `data` points to at least STATE_SLOTS aligned 8-byte elements of an
            // attached buffer (checked above), and no JavaScript ran since, so it is still
            // attached and alive.
            unsafe {
                ptr::copy_nonoverlapping(numbers.as_ptr(), data, numbers.len());
                data.add(STATE_SLOTS - 1).cast::<u64>().write(token);
            }
            ptr::null_mut() // undefined
        }
        // SAFETY: env is live.
        Err(err) => unsafe { throw(env, err) },
    }
}
