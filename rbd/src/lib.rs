//! Ceph RBD images through librados and librbd, loaded at run time.
//!
//! The libraries are opened with `dlopen` on first use rather than linked, so Glint builds and
//! runs on machines without Ceph and only an RBD store needs `librbd1` installed. Every call is
//! blocking: callers run them on blocking threads. This crate is the only place in Glint with
//! `unsafe` code; each block states the contract it relies on. Pointers passed to C are only
//! ever those of live Rust values or of handles this crate created and has not released; no
//! pointer arithmetic happens on this side.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::ptr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

type Rados = *mut c_void;
type IoCtx = *mut c_void;
type RbdImage = *mut c_void;
type ImageOptions = *mut c_void;

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

/// `rbd_image_spec_t`: an image's id and name, both owned by librbd until cleaned up.
#[repr(C)]
struct ImageSpec {
    id: *mut c_char,
    name: *mut c_char,
}

/// `RBD_IMAGE_OPTION_ORDER` from librbd.h.
const IMAGE_OPTION_ORDER: c_int = 2;
const ERANGE: c_int = 34;

/// The C entry points Glint uses, resolved once from librados.so.2 and librbd.so.1.
struct Lib {
    rados_create: unsafe extern "C" fn(*mut Rados, *const c_char) -> c_int,
    rados_conf_read_file: unsafe extern "C" fn(Rados, *const c_char) -> c_int,
    rados_conf_set: unsafe extern "C" fn(Rados, *const c_char, *const c_char) -> c_int,
    rados_connect: unsafe extern "C" fn(Rados) -> c_int,
    rados_shutdown: unsafe extern "C" fn(Rados),
    rados_cluster_fsid: unsafe extern "C" fn(Rados, *mut c_char, usize) -> c_int,
    rados_ioctx_create: unsafe extern "C" fn(Rados, *const c_char, *mut IoCtx) -> c_int,
    rados_ioctx_destroy: unsafe extern "C" fn(IoCtx),
    rbd_image_options_create: unsafe extern "C" fn(*mut ImageOptions),
    rbd_image_options_destroy: unsafe extern "C" fn(ImageOptions),
    rbd_image_options_set_uint64: unsafe extern "C" fn(ImageOptions, c_int, u64) -> c_int,
    rbd_create4: unsafe extern "C" fn(IoCtx, *const c_char, u64, ImageOptions) -> c_int,
    rbd_remove: unsafe extern "C" fn(IoCtx, *const c_char) -> c_int,
    rbd_list2: unsafe extern "C" fn(IoCtx, *mut ImageSpec, *mut usize) -> c_int,
    rbd_image_spec_list_cleanup: unsafe extern "C" fn(*mut ImageSpec, usize),
    rbd_open: unsafe extern "C" fn(IoCtx, *const c_char, *mut RbdImage, *const c_char) -> c_int,
    rbd_open_read_only: unsafe extern "C" fn(IoCtx, *const c_char, *mut RbdImage, *const c_char) -> c_int,
    rbd_close: unsafe extern "C" fn(RbdImage) -> c_int,
    rbd_resize: unsafe extern "C" fn(RbdImage, u64) -> c_int,
    rbd_get_size: unsafe extern "C" fn(RbdImage, *mut u64) -> c_int,
    rbd_get_create_timestamp: unsafe extern "C" fn(RbdImage, *mut Timespec) -> c_int,
    rbd_write: unsafe extern "C" fn(RbdImage, u64, usize, *const c_char) -> isize,
    rbd_read: unsafe extern "C" fn(RbdImage, u64, usize, *mut c_char) -> isize,
    rbd_flush: unsafe extern "C" fn(RbdImage) -> c_int,
    rbd_snap_exists: unsafe extern "C" fn(RbdImage, *const c_char, *mut bool) -> c_int,
    rbd_snap_create: unsafe extern "C" fn(RbdImage, *const c_char) -> c_int,
    rbd_snap_remove: unsafe extern "C" fn(RbdImage, *const c_char) -> c_int,
    rbd_snap_protect: unsafe extern "C" fn(RbdImage, *const c_char) -> c_int,
    rbd_snap_unprotect: unsafe extern "C" fn(RbdImage, *const c_char) -> c_int,
    rbd_snap_is_protected: unsafe extern "C" fn(RbdImage, *const c_char, *mut c_int) -> c_int,
    rbd_list_children3: unsafe extern "C" fn(RbdImage, *mut c_void, *mut usize) -> c_int,
    rbd_watchers_list: unsafe extern "C" fn(RbdImage, *mut c_void, *mut usize) -> c_int,
    // The libraries stay loaded for the life of the process: the function pointers above
    // point into them.
    _rados: libloading::Library,
    _rbd: libloading::Library,
}

/// Loads the libraries once; later calls get the same outcome.
fn lib() -> io::Result<&'static Lib> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(|| Lib::load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.clone()))
}

impl Lib {
    fn load() -> Result<Lib, libloading::Error> {
        // SAFETY: librados and librbd run no initialisation code with preconditions on load;
        // they are Ceph's public client libraries, meant to be loaded into any process.
        let rados = unsafe { libloading::Library::new("librados.so.2")? };
        // SAFETY: as above.
        let rbd = unsafe { libloading::Library::new("librbd.so.1")? };
        macro_rules! sym {
            ($lib:ident, $name:ident) => {
                // SAFETY: the field's type is the C prototype of the symbol of the same name
                // in librados.h / librbd.h (Ceph 16), and the library outlives the pointer
                // (both are kept in `Lib`).
                *unsafe { $lib.get(concat!(stringify!($name), "\0").as_bytes())? }
            };
        }
        Ok(Lib {
            rados_create: sym!(rados, rados_create),
            rados_conf_read_file: sym!(rados, rados_conf_read_file),
            rados_conf_set: sym!(rados, rados_conf_set),
            rados_connect: sym!(rados, rados_connect),
            rados_shutdown: sym!(rados, rados_shutdown),
            rados_cluster_fsid: sym!(rados, rados_cluster_fsid),
            rados_ioctx_create: sym!(rados, rados_ioctx_create),
            rados_ioctx_destroy: sym!(rados, rados_ioctx_destroy),
            rbd_image_options_create: sym!(rbd, rbd_image_options_create),
            rbd_image_options_destroy: sym!(rbd, rbd_image_options_destroy),
            rbd_image_options_set_uint64: sym!(rbd, rbd_image_options_set_uint64),
            rbd_create4: sym!(rbd, rbd_create4),
            rbd_remove: sym!(rbd, rbd_remove),
            rbd_list2: sym!(rbd, rbd_list2),
            rbd_image_spec_list_cleanup: sym!(rbd, rbd_image_spec_list_cleanup),
            rbd_open: sym!(rbd, rbd_open),
            rbd_open_read_only: sym!(rbd, rbd_open_read_only),
            rbd_close: sym!(rbd, rbd_close),
            rbd_resize: sym!(rbd, rbd_resize),
            rbd_get_size: sym!(rbd, rbd_get_size),
            rbd_get_create_timestamp: sym!(rbd, rbd_get_create_timestamp),
            rbd_write: sym!(rbd, rbd_write),
            rbd_read: sym!(rbd, rbd_read),
            rbd_flush: sym!(rbd, rbd_flush),
            rbd_snap_exists: sym!(rbd, rbd_snap_exists),
            rbd_snap_create: sym!(rbd, rbd_snap_create),
            rbd_snap_remove: sym!(rbd, rbd_snap_remove),
            rbd_snap_protect: sym!(rbd, rbd_snap_protect),
            rbd_snap_unprotect: sym!(rbd, rbd_snap_unprotect),
            rbd_snap_is_protected: sym!(rbd, rbd_snap_is_protected),
            rbd_list_children3: sym!(rbd, rbd_list_children3),
            rbd_watchers_list: sym!(rbd, rbd_watchers_list),
            _rados: rados,
            _rbd: rbd,
        })
    }
}

/// A negative errno from librados/librbd as an I/O error (`ENOENT` becomes `NotFound`, ...).
fn check(ret: c_int) -> io::Result<()> {
    if ret < 0 { Err(io::Error::from_raw_os_error(-ret)) } else { Ok(()) }
}

fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a Ceph name"))
}

/// How to reach a cluster: the `client.<user>` identity, an optional ceph.conf and keyring,
/// and further options as ceph.conf would spell them.
#[derive(Clone, Debug, Default)]
pub struct ClusterConfig {
    /// The cephx user without the `client.` prefix (`glance`, `admin`).
    pub user: String,
    /// A ceph.conf to read; unset reads Ceph's default search path.
    pub conf_file: Option<String>,
    /// A keyring to use instead of the one the configuration names.
    pub keyring: Option<String>,
    /// How long connecting and each monitor or OSD operation may take.
    pub timeout: Duration,
}

/// A connection to a Ceph cluster; librados handles are safe to share between threads.
pub struct Cluster {
    lib: &'static Lib,
    handle: Rados,
}

// SAFETY: a rados_t may be used from any thread and concurrently (librados is thread-safe);
// Glint never mutates it after `connect` except through librados itself.
unsafe impl Send for Cluster {}
// SAFETY: as above.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Loads the libraries if needed and connects, or says why not.
    pub fn connect(cfg: &ClusterConfig) -> io::Result<Arc<Cluster>> {
        let lib = lib()?;
        let user = cstring(&cfg.user)?;
        let mut handle: Rados = ptr::null_mut();
        // SAFETY: `handle` is a valid out-pointer and `user` a NUL-terminated string alive for
        // the call.
        check(unsafe { (lib.rados_create)(&mut handle, user.as_ptr()) })?;
        // From here on `Drop` shuts the handle down, whatever fails next.
        let cluster = Cluster { lib, handle };
        let path = cfg.conf_file.as_deref().map(cstring).transpose()?;
        // SAFETY: a live handle; a NUL-terminated path or NULL (Ceph's default search path).
        check(unsafe { (lib.rados_conf_read_file)(handle, path.as_ref().map_or(ptr::null(), |p| p.as_ptr())) })?;
        if let Some(keyring) = &cfg.keyring {
            cluster.set("keyring", keyring)?;
        }
        let secs = cfg.timeout.as_secs().max(1).to_string();
        for option in ["client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"] {
            cluster.set(option, &secs)?;
        }
        // SAFETY: a live, configured, not yet connected handle.
        check(unsafe { (lib.rados_connect)(handle) })?;
        Ok(Arc::new(cluster))
    }

    fn set(&self, option: &str, value: &str) -> io::Result<()> {
        let (option, value) = (cstring(option)?, cstring(value)?);
        // SAFETY: a live handle and two NUL-terminated strings alive for the call.
        check(unsafe { (self.lib.rados_conf_set)(self.handle, option.as_ptr(), value.as_ptr()) })
    }

    /// The cluster's fsid, as `rbd://` locations name it.
    pub fn fsid(&self) -> io::Result<String> {
        let mut buf = [0 as c_char; 64];
        // SAFETY: a live handle and a buffer of the length passed; librados NUL-terminates.
        let len = unsafe { (self.lib.rados_cluster_fsid)(self.handle, buf.as_mut_ptr(), buf.len()) };
        check(len)?;
        // SAFETY: librados wrote a NUL-terminated string into `buf`.
        let fsid = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Ok(fsid.to_string_lossy().into_owned())
    }

    /// An I/O context on `pool`.
    pub fn pool(self: &Arc<Cluster>, pool: &str) -> io::Result<Pool> {
        let name = cstring(pool)?;
        let mut io: IoCtx = ptr::null_mut();
        // SAFETY: a live connected handle, a NUL-terminated name and a valid out-pointer.
        check(unsafe { (self.lib.rados_ioctx_create)(self.handle, name.as_ptr(), &mut io) })?;
        Ok(Pool { cluster: Arc::clone(self), io })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create and every Pool holds an Arc to this
        // Cluster, so no I/O context outlives it.
        unsafe { (self.lib.rados_shutdown)(self.handle) }
    }
}

/// An I/O context on one pool.
pub struct Pool {
    cluster: Arc<Cluster>,
    io: IoCtx,
}

// SAFETY: I/O contexts are thread-safe for the operations used here (librados documents
// rados_ioctx_t as safe to share; librbd takes its own locks per image).
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Pool {
    fn lib(&self) -> &'static Lib {
        self.cluster.lib
    }

    /// Creates image `name` of `size` bytes made of objects of `1 << order` bytes, with the
    /// cluster's default features (layering included, which clones need).
    pub fn create(&self, name: &str, size: u64, order: u8) -> io::Result<()> {
        let lib = self.lib();
        let name = cstring(name)?;
        let mut opts: ImageOptions = ptr::null_mut();
        // SAFETY: a valid out-pointer; the options are destroyed below on every path.
        unsafe { (lib.rbd_image_options_create)(&mut opts) };
        // SAFETY: live options, a known option id and an integer value.
        let mut ret = unsafe { (lib.rbd_image_options_set_uint64)(opts, IMAGE_OPTION_ORDER, u64::from(order)) };
        if ret == 0 {
            // SAFETY: a live I/O context, a NUL-terminated name and live options.
            ret = unsafe { (lib.rbd_create4)(self.io, name.as_ptr(), size, opts) };
        }
        // SAFETY: options created above and not used after this.
        unsafe { (lib.rbd_image_options_destroy)(opts) };
        check(ret)
    }

    /// Removes image `name` (it must have no snapshots; `EBUSY` while someone has it open).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let name = cstring(name)?;
        // SAFETY: a live I/O context and a NUL-terminated name.
        check(unsafe { (self.lib().rbd_remove)(self.io, name.as_ptr()) })
    }

    /// The names of every image in the pool.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let lib = self.lib();
        let mut capacity = 64usize;
        loop {
            let mut specs: Vec<ImageSpec> = Vec::with_capacity(capacity);
            let mut count = capacity;
            // SAFETY: `specs` has room for `count` entries; librbd fills at most that many
            // and reports how many (or -ERANGE with the number needed).
            let ret = unsafe { (lib.rbd_list2)(self.io, specs.as_mut_ptr(), &mut count) };
            if ret == -ERANGE {
                capacity = count.max(capacity * 2);
                continue;
            }
            check(ret)?;
            // SAFETY: librbd initialised the first `count` entries.
            unsafe { specs.set_len(count) };
            let names = specs
                .iter()
                // SAFETY: each name is a NUL-terminated string owned by librbd until cleanup.
                .map(|spec| unsafe { CStr::from_ptr(spec.name) }.to_string_lossy().into_owned())
                .collect();
            // SAFETY: the entries librbd allocated, released once; `specs` is not read after.
            unsafe { (lib.rbd_image_spec_list_cleanup)(specs.as_mut_ptr(), count) };
            return Ok(names);
        }
    }

    /// Opens image `name` for writing, at its head.
    pub fn open(&self, name: &str) -> io::Result<Image<'_>> {
        self.open_with(name, None, self.lib().rbd_open)
    }

    /// Opens image `name` read-only, at snapshot `snap` or at its head. Read-only opens set
    /// no watch, so they are invisible to [`Image::has_watchers`].
    pub fn open_read_only(&self, name: &str, snap: Option<&str>) -> io::Result<Image<'_>> {
        self.open_with(name, snap, self.lib().rbd_open_read_only)
    }

    fn open_with(
        &self,
        name: &str,
        snap: Option<&str>,
        open: unsafe extern "C" fn(IoCtx, *const c_char, *mut RbdImage, *const c_char) -> c_int,
    ) -> io::Result<Image<'_>> {
        let name = cstring(name)?;
        let snap = snap.map(cstring).transpose()?;
        let mut handle: RbdImage = ptr::null_mut();
        // SAFETY: a live I/O context, NUL-terminated strings (or NULL for no snapshot) and a
        // valid out-pointer.
        check(unsafe { open(self.io, name.as_ptr(), &mut handle, snap.as_ref().map_or(ptr::null(), |s| s.as_ptr())) })?;
        Ok(Image { pool: self, handle })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create; every Image borrows the Pool, so none is open.
        unsafe { (self.lib().rados_ioctx_destroy)(self.io) }
    }
}

/// An open RBD image; closed on drop.
pub struct Image<'p> {
    pool: &'p Pool,
    handle: RbdImage,
}

// SAFETY: an rbd_image_t may move between threads; it is used by one thread at a time here
// (no `Sync`).
unsafe impl Send for Image<'_> {}

impl Image<'_> {
    fn lib(&self) -> &'static Lib {
        self.pool.lib()
    }

    fn snap_call(&self, call: unsafe extern "C" fn(RbdImage, *const c_char) -> c_int, snap: &str) -> io::Result<()> {
        let snap = cstring(snap)?;
        // SAFETY: a live image handle and a NUL-terminated snapshot name.
        check(unsafe { call(self.handle, snap.as_ptr()) })
    }

    /// Writes all of `data` at `offset`; the image must be large enough.
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        // SAFETY: a live image handle and a buffer of exactly `data.len()` readable bytes.
        let written = unsafe { (self.lib().rbd_write)(self.handle, offset, data.len(), data.as_ptr().cast()) };
        match usize::try_from(written) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(n) => Err(io::Error::new(io::ErrorKind::WriteZero, format!("rbd wrote {n} of {} bytes", data.len()))),
            Err(_) => Err(io::Error::from_raw_os_error(i32::try_from(-written).unwrap_or(i32::MAX))),
        }
    }

    /// Reads into `buf` from `offset`; returns how many bytes were read (short at the end).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: a live image handle and a buffer of exactly `buf.len()` writable bytes.
        let read = unsafe { (self.lib().rbd_read)(self.handle, offset, buf.len(), buf.as_mut_ptr().cast()) };
        usize::try_from(read).map_err(|_| io::Error::from_raw_os_error(i32::try_from(-read).unwrap_or(i32::MAX)))
    }

    /// Grows or shrinks the image to `size` bytes.
    pub fn resize(&self, size: u64) -> io::Result<()> {
        // SAFETY: a live image handle.
        check(unsafe { (self.lib().rbd_resize)(self.handle, size) })
    }

    /// The image's size in bytes (the snapshot's, when opened at one).
    pub fn size(&self) -> io::Result<u64> {
        let mut size = 0u64;
        // SAFETY: a live image handle and a valid out-pointer.
        check(unsafe { (self.lib().rbd_get_size)(self.handle, &mut size) })?;
        Ok(size)
    }

    /// When the image was created.
    pub fn created(&self) -> io::Result<SystemTime> {
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: a live image handle and a valid out-pointer of the C layout.
        check(unsafe { (self.lib().rbd_get_create_timestamp)(self.handle, &mut ts) })?;
        let since_epoch = Duration::new(u64::try_from(ts.sec).unwrap_or(0), u32::try_from(ts.nsec).unwrap_or(0));
        Ok(SystemTime::UNIX_EPOCH + since_epoch)
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: a live image handle.
        check(unsafe { (self.lib().rbd_flush)(self.handle) })
    }

    /// Whether snapshot `snap` exists.
    pub fn snap_exists(&self, snap: &str) -> io::Result<bool> {
        let name = cstring(snap)?;
        let mut exists = false;
        // SAFETY: a live image handle, a NUL-terminated name and a valid out-pointer.
        check(unsafe { (self.lib().rbd_snap_exists)(self.handle, name.as_ptr(), &mut exists) })?;
        Ok(exists)
    }

    /// Whether snapshot `snap` is protected (clones need it to be).
    pub fn snap_is_protected(&self, snap: &str) -> io::Result<bool> {
        let name = cstring(snap)?;
        let mut protected: c_int = 0;
        // SAFETY: a live image handle, a NUL-terminated name and a valid out-pointer.
        check(unsafe { (self.lib().rbd_snap_is_protected)(self.handle, name.as_ptr(), &mut protected) })?;
        Ok(protected != 0)
    }

    /// Takes snapshot `snap` of the image's current data.
    pub fn snap_create(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.lib().rbd_snap_create, snap)
    }

    /// Protects snapshot `snap` so that it can be cloned and cannot be removed.
    pub fn snap_protect(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.lib().rbd_snap_protect, snap)
    }

    /// Unprotects snapshot `snap`; `EBUSY` while clones of it exist.
    pub fn snap_unprotect(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.lib().rbd_snap_unprotect, snap)
    }

    /// Removes snapshot `snap` (it must be unprotected).
    pub fn snap_remove(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.lib().rbd_snap_remove, snap)
    }

    /// Whether images are cloned from the snapshot this image was opened at.
    pub fn has_children(&self) -> io::Result<bool> {
        self.any(self.lib().rbd_list_children3)
    }

    /// Whether any client holds the image open for writing (a read-write open sets a watch).
    pub fn has_watchers(&self) -> io::Result<bool> {
        self.any(self.lib().rbd_watchers_list)
    }

    /// Asks a librbd list call for zero entries: it answers `-ERANGE` exactly when there is at
    /// least one, so nothing needs to be allocated or freed.
    fn any(&self, list: unsafe extern "C" fn(RbdImage, *mut c_void, *mut usize) -> c_int) -> io::Result<bool> {
        let mut count = 0usize;
        // SAFETY: a live image handle; with a capacity of zero librbd writes no entry, so a
        // NULL array is never dereferenced.
        let ret = unsafe { list(self.handle, ptr::null_mut(), &mut count) };
        if ret == -ERANGE {
            return Ok(true);
        }
        check(ret)?;
        Ok(count > 0)
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        // SAFETY: a handle from rbd_open*, closed exactly once.
        unsafe { (self.lib().rbd_close)(self.handle) };
    }
}
