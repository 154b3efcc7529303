// Lesson 15: inode storage, which only a BPF LSM program can fill. Opens counted per file.
//
// BPF_INODE_STORAGE(name, type) gives each inode (each file) one value of `type`. An LSM
// program runs at a security hook, here inode_permission: the kernel asks it each time a
// process opens, runs or looks through a file. It may refuse by returning an error; 0 allows.
// Without F_CREATE the lookup finds a value only on files user space has tagged with one.

struct inode;                            // the program only passes the pointer on

BPF_INODE_STORAGE(checks, u64);

LSM_PROBE(inode_permission, struct inode *inode, int mask) {
    u64 *n = checks.inode_storage_get(inode, 0, 0);   // no F_CREATE: tagged files only
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;                            // 0: allow
}
