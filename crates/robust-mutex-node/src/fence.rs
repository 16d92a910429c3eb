//! The fencing token of this JS thread's last acquisition, handed to JavaScript without a call
//! or an allocation: every acquisition writes it into a small ArrayBuffer shared with
//! `index.ts`, which reads it right after the call that returned the lock token (the same
//! thread, synchronously, so nothing can overwrite it in between).
//!
//! A `bigint` per acquisition would cost an allocation and a conversion on the fast path, and an
//! extra Node-API call to fetch the token more than the lock itself; `index.ts` builds the
//! `bigint` only when `guard.fencingToken` is read. The token is written as two 32-bit words,
//! low then high (read there through an `Int32Array`, whose elements stay small integers for
//! V8), so all 64 bits cross, whatever their value.
//!
//! The buffer is one per JS thread (main thread or worker), like the handle table: created by
//! `fenceSlot()`, kept alive by a reference until the environment is torn down, and the same
//! buffer for every later call in that thread (a second copy of the module must read where the
//! binding writes).

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use napi::sys;

/// Two 32-bit words: the low and the high half of the token.
const SLOT_BYTES: usize = 8;

thread_local! {
    /// The shared buffer's memory (null until `fenceSlot()` ran in this thread, or after its
    /// environment was torn down).
    static SLOT: Cell<*mut u32> = const { Cell::new(ptr::null_mut()) };
    /// The reference that keeps the buffer alive and finds it again.
    static REFERENCE: Cell<sys::napi_ref> = const { Cell::new(ptr::null_mut()) };
}

/// Publishes `token` for the acquisition the current call is about to return.
#[inline(always)]
pub(crate) fn publish(token: u64) {
    let slot = SLOT.with(Cell::get);
    if !slot.is_null() {
        // SAFETY: `slot` is the data of this thread's live buffer, SLOT_BYTES long and aligned
        // for u32 (ArrayBuffer memory comes from the allocator); JavaScript of this thread
        // reads it only between calls, never while this runs.
        unsafe {
            slot.write(token as u32);
            slot.add(1).write((token >> 32) as u32);
        }
    }
}

/// `fenceSlot()`: this thread's shared ArrayBuffer (8 bytes), created at the first call.
///
/// # Safety
/// Called by Node as a function callback: `env` is live.
pub(crate) unsafe extern "C" fn fence_slot(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    let mut value = ptr::null_mut();
    let existing = REFERENCE.with(Cell::get);
    if !existing.is_null() {
        // SAFETY: a strong reference of this environment, created below.
        if unsafe { sys::napi_get_reference_value(env, existing, &mut value) } == sys::Status::napi_ok && !value.is_null() {
            return value;
        }
    }
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: env is live; `data` receives the new buffer's memory, which does not move.
    if unsafe { sys::napi_create_arraybuffer(env, SLOT_BYTES, &mut data, &mut value) } != sys::Status::napi_ok {
        return throw(env, c"cannot allocate the fencing token buffer");
    }
    let mut reference = ptr::null_mut();
    // SAFETY: `value` was just created in this env; a count of 1 keeps it alive.
    if unsafe { sys::napi_create_reference(env, value, 1, &mut reference) } != sys::Status::napi_ok {
        return throw(env, c"cannot keep the fencing token buffer");
    }
    // SAFETY: the hook runs once, at this environment's teardown, with no data.
    if unsafe { sys::napi_add_env_cleanup_hook(env, Some(forget), ptr::null_mut()) } != sys::Status::napi_ok {
        return throw(env, c"cannot register the fencing token buffer's cleanup");
    }
    SLOT.with(|slot| slot.set(data.cast()));
    REFERENCE.with(|r| r.set(reference));
    value
}

/// The environment is going away: stop writing into its buffer. (Its reference goes with it.)
unsafe extern "C" fn forget(_data: *mut c_void) {
    let _ = SLOT.try_with(|slot| slot.set(ptr::null_mut()));
    let _ = REFERENCE.try_with(|r| r.set(ptr::null_mut()));
}

fn throw(env: sys::napi_env, message: &std::ffi::CStr) -> sys::napi_value {
    // SAFETY: env is live (caller's contract) and the message is NUL-terminated.
    unsafe { sys::napi_throw_error(env, ptr::null(), message.as_ptr()) };
    ptr::null_mut()
}
