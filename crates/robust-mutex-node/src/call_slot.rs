//! `tryLockSlot()` and `releaseSlot()`: the uncontended `tryLock` and `release` with their
//! arguments and result in this thread's block (`fence.rs`) instead of Node-API values.
//!
//! Reading three numbers and creating one cost a tryLock()+release() pair about as much as the
//! two calls themselves (`napi_get_cb_info`, `napi_get_value_double` and `napi_create_double`
//! with V8's conversions behind them, and the f64 check of the handle). Here `index.ts` writes
//! the arguments into Int32 words of the block, makes a call with none, and reads the result
//! from the block; no JavaScript can run between its writes, the call and its reads (they are
//! one synchronous stretch of its code), so the words are the call's own. Two copies of the
//! module in one thread share the block the same way. Same semantics and errors as
//! `tryLockFast`/`releaseFast` (`fast.rs`), thrown the same way.
//!
//! Words (each 32 bits, after the fencing token's two):
//! - `HANDLE`: the handle number, as the u32 it is (JavaScript stores it through an Int32Array,
//!   which keeps the bits). The call reads it and clears it to 0, which no handle is (its
//!   generation is never 0, `handles.rs`): a call that finds 0 there made no write of its own
//!   (its view was detached, say) and fails as a closed handle, never acting on an earlier
//!   call's handle.
//! - `TOKEN_LO`, `TOKEN_HI`: the lock token (`id * 2 + owner_died`, below 2^53), low and high
//!   halves; the result of `tryLockSlot` (0: held elsewhere), the argument of `releaseSlot`.
//!   A token below 2^31 has a high half of 0 and a low half that reads as itself in
//!   JavaScript, a small integer (no allocation, as with `tryLockFast`).
//!
//! Every value a word can carry is checked as an argument was: any u32 handle goes through the
//! table lookup (a wrong slot or generation is a closed handle, as every u32 was before; the
//! old f64 check only refused values that cannot reach a u32 word), and a token through the
//! same range check as `Token::decode`.

use std::ptr;
use std::sync::atomic::Ordering;

use napi::sys;

use crate::errors::Fallible;
use crate::fast::{guarded, throw};
use crate::fence::{block, Block};
use crate::token::Token;

const HANDLE: usize = 2;
const TOKEN_LO: usize = 3;
const TOKEN_HI: usize = 4;

/// The handle argument, cleared for the next call (see the module comment).
#[inline(always)]
fn take_handle(block: &Block) -> u32 {
    let handle = block.0[HANDLE].load(Ordering::Relaxed);
    block.0[HANDLE].store(0, Ordering::Relaxed);
    handle
}

#[inline(always)]
fn no_slot() -> napi::Error {
    crate::errors::coded("EINVAL", "this thread has no call slot (call fenceSlot() first)")
}

/// `tryLockSlot()`: `tryLockFast(handle)` with the handle and the token in the block.
///
/// # Safety
/// Called by Node as a function callback: `env` is live.
pub(crate) unsafe extern "C" fn try_lock_slot(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    let result: Fallible<()> = guarded(|| {
        let block = block().ok_or_else(no_slot)?;
        let handle = take_handle(block);
        let token = crate::mutex::try_lock_token(env, handle)?;
        // Exact: tokens are integers below 2^53.
        let raw = token as u64;
        block.0[TOKEN_LO].store(raw as u32, Ordering::Relaxed);
        block.0[TOKEN_HI].store((raw >> 32) as u32, Ordering::Relaxed);
        Ok(())
    });
    match result {
        Ok(()) => ptr::null_mut(), // undefined
        // SAFETY: env is live.
        Err(err) => unsafe { throw(env, *err) },
    }
}

/// `releaseSlot()`: `releaseFast(handle, token)` with both in the block.
///
/// # Safety
/// Called by Node as a function callback: `env` is live.
pub(crate) unsafe extern "C" fn release_slot(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    let result: Fallible<()> = guarded(|| {
        let block = block().ok_or_else(no_slot)?;
        let handle = take_handle(block);
        let raw = u64::from(block.0[TOKEN_HI].load(Ordering::Relaxed)) << 32
            | u64::from(block.0[TOKEN_LO].load(Ordering::Relaxed));
        crate::mutex::release_token(handle, Token::from_raw(raw)?, false)
    });
    match result {
        Ok(()) => ptr::null_mut(), // undefined
        // SAFETY: env is live.
        Err(err) => unsafe { throw(env, *err) },
    }
}
