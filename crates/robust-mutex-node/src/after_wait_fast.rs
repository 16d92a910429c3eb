//! `tryLockAfterWaitFast(handle)`: the trylock a contended `lock()` makes on its JS thread after
//! its watch ended, as a raw Node-API callback (like `tryLockFast` in `fast.rs`). It is on the
//! handoff's path, and the generated `tryLockAfterWait` pays napi-rs's per-call bookkeeping
//! there. Same semantics and errors as `tryLockAfterWait` (declared for TypeScript in
//! `index.ts`).

use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

use crate::fast::{args, guarded, handle_arg, number, throw};

pub(crate) unsafe extern "C" fn try_lock_after_wait_fast(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: env/info come from Node for this callback.
    let [handle] = unsafe { args::<1>(env, info) };
    // SAFETY: as above.
    let handle = unsafe { number(env, handle) };
    let result = guarded(|| handle_arg(handle).and_then(|h| crate::mutex::try_lock_after_wait(Env::from_raw(env), h)));
    match result {
        Ok(token) => {
            let mut out = ptr::null_mut();
            // SAFETY: env is live; out receives the new number.
            unsafe { sys::napi_create_double(env, token, &mut out) };
            out
        }
        // SAFETY: env is live.
        Err(err) => unsafe { throw(env, err) },
    }
}
