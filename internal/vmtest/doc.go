// Package vmtest is the whole-host test of the update engine (`make
// vmtest`): a Debian bookworm host with systemd in a QEMU VM, laid out like
// Flatcar (GPT with USR-A, USR-B and a writable ROOT), booted by an
// initramfs that chooses the /usr slot as GRUB gptprio does
// (internal/gptprio), running the real update_engine, reboot manager,
// dbus-daemon, logind and the Omaha dev server inside the guest.
//
// The host side builds (and caches) the root file system with mmdebstrap,
// the Debian cloud kernel, the initramfs, four /usr images (1.0.0, 2.0.0,
// 3.0.0 and a 3.0.0 that fails its health gate), the disk and signed
// payloads; each scenario gets a copy of the disk and a read-only second
// disk with its payloads and update.conf. The guest half is guest/: the
// initramfs /init and the harness units, whose "VMTEST ..." lines on the
// serial console the tests follow. After each power-off the tests read the
// disk image itself (pkg/gpt, sgdisk -v, the slots' bytes).
//
// The tests run only with UE_VMTEST=1 (make vmtest), as root.
package vmtest
