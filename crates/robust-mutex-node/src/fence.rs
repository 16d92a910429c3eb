//! The fencing token of this JS thread's last acquisition, handed to JavaScript without a call
//! or an allocation: every acquisition writes it into 8 bytes that `index.ts` sees through an
//! ArrayBuffer and reads right after the call that returned the lock token (the same thread,
//! synchronously, so nothing can overwrite it in between).
//!
//! A `bigint` per acquisition would cost an allocation and a conversion on the fast path, and an
//! extra Node-API call to fetch the token more than the lock itself; `index.ts` builds the
//! `bigint` only when `guard.fencingToken` is read. The token is written as two 32-bit words,
//! low then high (read there through an `Int32Array`, whose elements stay small integers for
//! V8), so all 64 bits cross, whatever their value.
//!
//! The memory is the addon's, not JavaScript's: an ArrayBuffer can be detached by any code that
//! holds it (`structuredClone(b, { transfer: [b] })`, `postMessage`, `b.transfer()`), and
//! `fenceSlot()` is reachable by anyone through the raw binding. Had the addon kept writing
//! through a pointer into a JS-owned buffer, a detach would have handed that memory to another
//! buffer, freed once that one was collected, and every later acquisition would have written
//! into freed memory. So each thread gets a [`Block`] (24 bytes) that is never freed, exposed with
//! `napi_create_external_arraybuffer` and no finalizer: a detach only moves a view of it. (Node 20
//! does not even detach such a buffer: a transfer copies it.)
//!
//! Where external buffers are refused (Electron with the V8 sandbox:
//! `napi_no_external_buffers_allowed`), the buffer is an ordinary one, and no pointer into it is
//! kept: each write first asks Node for the buffer's current memory through the reference that
//! keeps it, and writes nothing when it is detached (a slower path, there only).
//!
//! The same block carries the arguments and the result of the uncontended `tryLock` and
//! `release` (`call_slot.rs`): words 2-4 after the token's two. Where external buffers are
//! refused the buffer is the token's 8 bytes only, and `index.ts` (seeing its length) passes
//! arguments the ordinary way.
//!
//! One buffer per JS thread (main thread or worker), like the handle table: created by
//! `fenceSlot()`, kept by a reference until the environment is torn down, and the same buffer for
//! every later call in that thread (a second copy of the module must read where the binding
//! writes). A detached one is replaced at the next call; `index.ts` checks before every
//! acquisition, so the detached buffer is never written after that.

use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use napi::sys;

/// The fencing token's two 32-bit words (the low and the high half): the whole buffer where
/// external buffers are refused.
const SLOT_BYTES: usize = 8;

/// Words of a block: the fencing token's two, then the call slot's (see `call_slot.rs`).
pub(crate) const BLOCK_WORDS: usize = 6;

/// Addon-owned memory for one thread's token and call slot, 8-aligned (any typed array can view
/// it). Atomic words: JavaScript writes them through its buffer, and a buffer over them may have
/// been transferred to another thread, which may read or write them while this one does
/// (relaxed loads and stores compile to plain ones).
#[repr(C, align(8))]
pub(crate) struct Block(pub(crate) [AtomicU32; BLOCK_WORDS]);

const BLOCK_BYTES: usize = std::mem::size_of::<Block>();
const _: () = assert!(BLOCK_BYTES == BLOCK_WORDS * 4 && BLOCK_BYTES >= SLOT_BYTES);

/// A new block, zeroed. Once a buffer over it has been handed to JavaScript it is never freed
/// nor given to another thread, not even after its environment ended: that buffer may have been
/// moved out beforehand (`transfer()` moves an external buffer's memory on Node 22) to a thread
/// that outlives the environment, and would then see, and could write, the words of any thread
/// given the block (its call-slot handle word between that thread's write and its call, making
/// its tryLock or release act on another of its handles). So every JS thread that ever took a
/// fence buffer costs `BLOCK_BYTES` for the life of the process (a worker costs megabytes).
fn new_block() -> Box<Block> {
    Box::new(Block(std::array::from_fn(|_| AtomicU32::new(0))))
}

thread_local! {
    /// This thread's block (None until `fenceSlot()` ran in this thread, after its environment
    /// was torn down, or where external buffers are refused).
    static SLOT: Cell<Option<&'static Block>> = const { Cell::new(None) };
    /// The reference that keeps the buffer handed to JavaScript and finds it again (null until
    /// `fenceSlot()` ran). Where external buffers are refused, the buffer written into.
    static REFERENCE: Cell<sys::napi_ref> = const { Cell::new(ptr::null_mut()) };
    /// The environment's cleanup hook is registered (once per environment).
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// This thread's block, while its environment has one (see `SLOT`).
#[inline(always)]
pub(crate) fn block() -> Option<&'static Block> {
    SLOT.with(Cell::get)
}

/// Publishes `token` for the acquisition the current call is about to return. `env` is the
/// running callback's.
#[inline(always)]
pub(crate) fn publish(env: sys::napi_env, token: u64) {
    if let Some(block) = SLOT.with(Cell::get) {
        block.0[0].store(token as u32, Ordering::Relaxed);
        block.0[1].store((token >> 32) as u32, Ordering::Relaxed);
    } else {
        publish_into_owned_buffer(env, token);
    }
}

/// The fallback where external buffers are refused: write into the JS-owned buffer, found
/// through its reference each time, only while it is not detached. (With no buffer at all,
/// before `fenceSlot()` or after teardown, there is nothing to write.)
#[cold]
fn publish_into_owned_buffer(env: sys::napi_env, token: u64) {
    let reference = REFERENCE.with(Cell::get);
    if reference.is_null() {
        return;
    }
    let mut value = ptr::null_mut();
    // SAFETY: `env` is the running callback's; `reference` was created in this thread's
    // environment by `fence_slot` and is cleared at its teardown.
    if unsafe { sys::napi_get_reference_value(env, reference, &mut value) } != sys::Status::napi_ok || value.is_null() {
        return;
    }
    let mut data: *mut c_void = ptr::null_mut();
    let mut length = 0usize;
    // SAFETY: `value` is an ArrayBuffer (the reference only ever holds one); the out-pointers
    // are valid. A detached buffer reports no data and length 0.
    if unsafe { sys::napi_get_arraybuffer_info(env, value, &mut data, &mut length) } != sys::Status::napi_ok {
        return;
    }
    if data.is_null() || length < SLOT_BYTES {
        return; // detached: that memory is no longer this buffer's
    }
    let words = data.cast::<u32>();
    // SAFETY: `data` is the memory of a live, attached buffer at least SLOT_BYTES long, asked
    // for just now; no JavaScript runs between that question and these writes (nothing here
    // calls into it), so nothing can detach or collect the buffer in between.
    unsafe {
        words.write_unaligned(token as u32);
        words.add(1).write_unaligned((token >> 32) as u32);
    }
}

/// `fenceSlot()`: this thread's ArrayBuffer (the block: the token, then the call slot) through which tokens are handed over,
/// created at the first call, and again after it was detached.
///
/// # Safety
/// Called by Node as a function callback: `env` is live.
pub(crate) unsafe extern "C" fn fence_slot(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    let existing = REFERENCE.with(Cell::get);
    if !existing.is_null() {
        let mut value = ptr::null_mut();
        let mut detached = true;
        // SAFETY: a strong reference of this environment, created below; `value` is then an
        // ArrayBuffer and `detached` a valid bool.
        let attached = unsafe {
            sys::napi_get_reference_value(env, existing, &mut value) == sys::Status::napi_ok
                && !value.is_null()
                && sys::napi_is_detached_arraybuffer(env, value, &mut detached) == sys::Status::napi_ok
                && !detached
        };
        if attached {
            return value;
        }
        // Detached by code that reached the raw binding. The block under it now shows through
        // the buffer that took it: never written again, nor reused (it stays allocated,
        // BLOCK_BYTES per detach). Make a new one.
        SLOT.with(|slot| slot.set(None));
        REFERENCE.with(|r| r.set(ptr::null_mut()));
        // SAFETY: `existing` is this environment's and is not used again.
        unsafe { sys::napi_delete_reference(env, existing) };
    }
    let (value, block) = match new_buffer(env) {
        Ok(created) => created,
        Err(message) => return throw(env, message),
    };
    let mut reference = ptr::null_mut();
    // SAFETY: `value` was just created in this env; a count of 1 keeps it alive.
    if unsafe { sys::napi_create_reference(env, value, 1, &mut reference) } != sys::Status::napi_ok {
        // The buffer stays unreferenced: its block may still show through it, so it is not
        // given back (a block lost, on a failure that does not happen in practice).
        return throw(env, c"cannot keep the fencing token buffer");
    }
    if !HOOKED.with(Cell::get) {
        // SAFETY: the hook runs once, at this environment's teardown, with no data.
        if unsafe { sys::napi_add_env_cleanup_hook(env, Some(forget), ptr::null_mut()) } != sys::Status::napi_ok {
            // SAFETY: `reference` was just created in this env and is not kept.
            unsafe { sys::napi_delete_reference(env, reference) };
            return throw(env, c"cannot register the fencing token buffer's cleanup");
        }
        HOOKED.with(|h| h.set(true));
    }
    SLOT.with(|slot| slot.set(block));
    REFERENCE.with(|r| r.set(reference));
    value
}

/// A new buffer: over a block of the addon's (its block returned too), or, where external
/// buffers are refused, an ordinary one (no block).
fn new_buffer(env: sys::napi_env) -> Result<(sys::napi_value, Option<&'static Block>), &'static CStr> {
    let block = new_block();
    let mut value = ptr::null_mut();
    let status = if external_buffers_refused_for_testing() {
        sys::Status::napi_no_external_buffers_allowed
    } else {
        // SAFETY: `block` is BLOCK_BYTES of memory that is leaked below once the buffer exists
        // (never freed), so the buffer can never outlive it and no finalizer is needed; if no
        // buffer was made, nothing views it and it is dropped. JavaScript may write it through
        // the buffer: the words are atomics, so the addon's shared reference to them stays sound.
        unsafe {
            sys::napi_create_external_arraybuffer(
                env,
                ptr::from_ref(&*block).cast_mut().cast(),
                BLOCK_BYTES,
                None,
                ptr::null_mut(),
                &mut value,
            )
        }
    };
    if status == sys::Status::napi_ok && !value.is_null() {
        return Ok((value, Some(Box::leak(block))));
    }
    drop(block); // no buffer views it
    if status != sys::Status::napi_no_external_buffers_allowed {
        return Err(c"cannot create the fencing token buffer");
    }
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: env is live; `data` is not kept (see `publish_into_owned_buffer`).
    if unsafe { sys::napi_create_arraybuffer(env, SLOT_BYTES, &mut data, &mut value) } != sys::Status::napi_ok {
        return Err(c"cannot allocate the fencing token buffer");
    }
    Ok((value, None))
}

/// `ROBUST_MUTEX_TEST_REFUSE_EXTERNAL_BUFFERS=1`: behave as where external buffers are refused,
/// so that tests run Electron's path on Node.
fn external_buffers_refused_for_testing() -> bool {
    std::env::var_os("ROBUST_MUTEX_TEST_REFUSE_EXTERNAL_BUFFERS").is_some_and(|v| v == "1")
}

/// The environment is going away: stop writing for it. (Its reference goes with it; its block
/// stays allocated and unused, see `new_block`.)
unsafe extern "C" fn forget(_data: *mut c_void) {
    let _ = SLOT.try_with(|slot| slot.set(None));
    let _ = REFERENCE.try_with(|r| r.set(ptr::null_mut()));
    let _ = HOOKED.try_with(|h| h.set(false));
}

fn throw(env: sys::napi_env, message: &CStr) -> sys::napi_value {
    // SAFETY: env is live (caller's contract) and the message is NUL-terminated.
    unsafe { sys::napi_throw_error(env, ptr::null(), message.as_ptr()) };
    ptr::null_mut()
}
