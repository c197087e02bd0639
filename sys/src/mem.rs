//! Shared memory: memfd_create(2), seals (fcntl(2) F_ADD_SEALS), fstat(2),
//! mmap(2)/munmap(2). The only owner of raw mappings: [`Mapping`] unmaps on
//! drop.

use core::ffi::CStr;

use super::{Errno, syscall6};

/// A file descriptor this code owns; closed on drop (raw close(2), which
/// never goes through the library's own `close` hook).
#[derive(Debug)]
pub struct OwnedFd(i32);

impl OwnedFd {
    /// Takes ownership of `fd`.
    pub fn new(fd: i32) -> Self {
        OwnedFd(fd)
    }

    /// The descriptor number.
    pub fn raw(&self) -> i32 {
        self.0
    }

    /// Gives the descriptor up without closing it.
    pub fn into_raw(self) -> i32 {
        let fd = self.0;
        core::mem::forget(self);
        fd
    }
}

impl Drop for OwnedFd {
    fn drop(&mut self) {
        super::close(self.0);
    }
}

/// The parts of fstat(2) this crate uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Device of the file system holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// File type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
}

impl FileStat {
    /// True for a socket.
    pub fn is_socket(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFSOCK
    }

    /// True for a pipe or a FIFO.
    pub fn is_fifo(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFIFO
    }
}

/// fstat(2).
pub fn fstat(fd: i32) -> Result<FileStat, Errno> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: the kernel fills the stat buffer, which lives on this frame.
    unsafe { syscall6(libc::SYS_fstat, [fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0]) }?;
    // SAFETY: zero-initialised and filled by the kernel.
    let st = unsafe { st.assume_init() };
    Ok(FileStat { dev: st.st_dev, ino: st.st_ino, mode: st.st_mode, uid: st.st_uid, size: st.st_size as u64 })
}

/// fstatat(2) of `path` relative to the working directory, without
/// following a final symlink (lstat(2)).
pub fn lstat(path: &core::ffi::CStr) -> Result<FileStat, Errno> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::zeroed();
    let (cwd, nofollow) = (libc::AT_FDCWD as usize, libc::AT_SYMLINK_NOFOLLOW as usize);
    // SAFETY: `path` is NUL-terminated and outlives the call; the kernel
    // fills the stat buffer, which lives on this frame.
    unsafe { syscall6(libc::SYS_newfstatat, [cwd, path.as_ptr() as usize, st.as_mut_ptr() as usize, nofollow, 0, 0]) }?;
    // SAFETY: zero-initialised and filled by the kernel.
    let st = unsafe { st.assume_init() };
    Ok(FileStat { dev: st.st_dev, ino: st.st_ino, mode: st.st_mode, uid: st.st_uid, size: st.st_size as u64 })
}

/// The parts of fstatfs(2) this crate uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStat {
    /// The file system's magic number (`TMPFS_MAGIC`, ...).
    pub kind: i64,
    /// Its block size (a hugetlbfs mount's huge page size).
    pub block: i64,
}

/// fstatfs(2).
pub fn fstatfs(fd: i32) -> Result<FsStat, Errno> {
    let mut st = core::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the kernel fills the statfs buffer, which lives on this frame.
    unsafe { syscall6(libc::SYS_fstatfs, [fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0]) }?;
    // SAFETY: zero-initialised and filled by the kernel.
    let st = unsafe { st.assume_init() };
    Ok(FsStat { kind: st.f_type, block: st.f_bsize })
}

/// memfd_create(2) with close-on-exec and sealing allowed, sized to `len`,
/// mode 0600, and sealed against growing, shrinking and further seals.
pub fn sealed_memfd(name: &CStr, len: u64) -> Result<OwnedFd, Errno> {
    let flags = (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as usize;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let fd =
        OwnedFd::new(unsafe { syscall6(libc::SYS_memfd_create, [name.as_ptr() as usize, flags, 0, 0, 0, 0]) }? as i32);
    // SAFETY: plain calls on the descriptor just created.
    unsafe {
        syscall6(libc::SYS_fchmod, [fd.raw() as usize, 0o600, 0, 0, 0, 0])?;
        syscall6(libc::SYS_ftruncate, [fd.raw() as usize, len as usize, 0, 0, 0, 0])?;
        let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        syscall6(libc::SYS_fcntl, [fd.raw() as usize, libc::F_ADD_SEALS as usize, seals as usize, 0, 0, 0])?;
    }
    Ok(fd)
}

/// The seals of a memfd (fcntl F_GET_SEALS).
pub fn seals(fd: i32) -> Result<i32, Errno> {
    // SAFETY: F_GET_SEALS takes no pointer.
    unsafe { syscall6(libc::SYS_fcntl, [fd as usize, libc::F_GET_SEALS as usize, 0, 0, 0, 0]) }.map(|s| s as i32)
}

/// A shared read-write mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access to it goes
// through atomics or through copies whose callers coordinate with atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, read-write. Nothing is faulted in:
    /// a page of a memfd is allocated (and zeroed) by the first access of
    /// either side, so a mapping costs the same whatever its size, and
    /// only the pages used ever take memory.
    pub fn shared(fd: i32, len: usize) -> Result<Mapping, Errno> {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
        let flags = libc::MAP_SHARED as usize;
        // SAFETY: a new mapping chosen by the kernel; nothing else is touched.
        let ptr = unsafe { syscall6(libc::SYS_mmap, [0, len, prot, flags, fd as usize, 0]) }?;
        Ok(Mapping { ptr: ptr as *mut u8, len })
    }

    /// Start of the mapping.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: mappings are at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `shared` mapped; no reference into
        // it outlives the Mapping (its users borrow it).
        let _ = unsafe { syscall6(libc::SYS_munmap, [self.ptr as usize, self.len, 0, 0, 0, 0]) };
    }
}

/// Maps `len` bytes of private anonymous memory, zero-filled, whose pages
/// the kernel commits only when first written (mmap(2) `MAP_PRIVATE |
/// MAP_ANONYMOUS | MAP_NORESERVE`). Never unmapped by this crate: the
/// caller owns the range (a fork child inherits a copy, as of any private
/// memory).
pub fn anonymous(len: usize) -> Result<*mut u8, Errno> {
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as usize;
    // SAFETY: a new mapping chosen by the kernel; nothing else is touched.
    let ptr = unsafe { syscall6(libc::SYS_mmap, [0, len, prot, flags, usize::MAX, 0]) }?;
    Ok(ptr as *mut u8)
}

/// Unmaps `[addr, addr + len)` (munmap(2)).
///
/// # Safety
/// A range [`anonymous`] returned, with no reference into it left.
pub unsafe fn unmap(addr: *mut u8, len: usize) {
    // SAFETY: the caller's contract.
    let _ = unsafe { syscall6(libc::SYS_munmap, [addr as usize, len, 0, 0, 0, 0]) };
}

/// `MADV_POPULATE_WRITE` (Linux 5.14): faults the pages in as a write would,
/// without writing.
const MADV_POPULATE_WRITE: usize = 23;

/// Faults the whole pages inside `[addr, addr + len)` in, writable, as a
/// write to them would, changing no byte (madvise(2)
/// `MADV_POPULATE_WRITE`). Partial pages at either end are left alone.
///
/// # Safety
/// The range must be memory the caller is about to write anyway: the
/// kernel allocates its pages (and, for a shared file mapping, dirties
/// them) as a write would.
pub unsafe fn populate_write(addr: *mut u8, len: usize) -> Result<(), Errno> {
    let start = (addr as usize).next_multiple_of(PAGE);
    let end = (addr as usize).saturating_add(len) / PAGE * PAGE;
    if end <= start {
        return Ok(());
    }
    // SAFETY: whole pages of the caller's range; no byte changes.
    unsafe { syscall6(libc::SYS_madvise, [start, end - start, MADV_POPULATE_WRITE, 0, 0, 0]) }.map(|_| ())
}

/// Whether the page holding `addr` is resident (mincore(2)): false for
/// memory never touched since it was mapped, which a copy into it would
/// fault in page by page.
pub fn resident(addr: *const u8) -> Result<bool, Errno> {
    let page = addr as usize / PAGE * PAGE;
    let mut vec = 0u8;
    // SAFETY: mincore writes one byte per page of the range: one.
    unsafe { syscall6(libc::SYS_mincore, [page, PAGE, &mut vec as *mut u8 as usize, 0, 0, 0]) }?;
    Ok(vec & 1 != 0)
}

/// The page size of x86-64 Linux.
const PAGE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfd_maps_and_refuses_to_grow() {
        let fd = sealed_memfd(c"ipc-offload-test", 1 << 20).unwrap();
        let st = fstat(fd.raw()).unwrap();
        assert_eq!(st.size, 1 << 20);
        assert_eq!(st.mode & 0o777, 0o600);
        let s = seals(fd.raw()).unwrap();
        assert_eq!(
            s & (libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL),
            libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL
        );
        // SAFETY: a plain ftruncate on our own memfd; it must fail.
        let grow = unsafe { syscall6(libc::SYS_ftruncate, [fd.raw() as usize, 2 << 20, 0, 0, 0, 0]) };
        assert_eq!(grow, Err(Errno(libc::EPERM)));
        let m = Mapping::shared(fd.raw(), 1 << 20).unwrap();
        // SAFETY: inside the mapping.
        unsafe { *m.ptr().add(12345) = 7 };
        let m2 = Mapping::shared(fd.raw(), 1 << 20).unwrap();
        // SAFETY: inside the second mapping of the same memfd.
        assert_eq!(unsafe { *m2.ptr().add(12345) }, 7);
    }

    #[test]
    fn populate_faults_in_without_writing() {
        let len = 64 << 12;
        // SAFETY: a fresh private anonymous mapping, ours alone.
        let p = unsafe {
            syscall6(
                libc::SYS_mmap,
                [
                    0,
                    len,
                    (libc::PROT_READ | libc::PROT_WRITE) as usize,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize,
                    usize::MAX,
                    0,
                ],
            )
        }
        .unwrap() as *mut u8;
        // SAFETY: inside the mapping.
        let (first, inner, last) = unsafe { (p, p.add(8 << 12), p.add(len - 1)) };
        assert_eq!(resident(inner), Ok(false));
        // SAFETY: the mapping is ours; from the middle of page 1 to the middle
        // of the last page: only the whole pages between, 2 to 62, are populated.
        unsafe { populate_write(p.add(6000), len - 6000 - 100) }.unwrap();
        assert_eq!(resident(inner), Ok(true));
        assert_eq!((resident(first), resident(last)), (Ok(false), Ok(false)));
        // SAFETY: inside the mapping, now faulted in: still zeroes.
        assert_eq!(unsafe { *inner }, 0);
        // SAFETY: unmapping our mapping.
        unsafe { syscall6(libc::SYS_munmap, [p as usize, len, 0, 0, 0, 0]) }.unwrap();
        assert_eq!(resident(inner), Err(Errno(libc::ENOMEM)));
    }
}
