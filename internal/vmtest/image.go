package vmtest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// builderVersion changes whenever the way images are built changes, so
// cached images from an older builder are not reused.
const builderVersion = "vmtest-image-5"

// Debian packages of the guest (mmdebstrap --include).
var guestPackages = []string{"systemd", "systemd-sysv", "dbus", "udev", "kmod", "etcd-server"}

// Flatcar's partition GUIDs for USR-A and USR-B (SPEC.md section 5).
var (
	guidUSRA = gpt.MustParseGUID("7130c94a-213a-4e5a-8e26-6cce9662f132")
	guidUSRB = gpt.MustParseGUID("e03dd35c-7c2d-4a47-b3fe-27f15780a57c")
	guidROOT = gpt.MustParseGUID("3ec1ba1d-85d9-4c0c-8a53-7a2e5e5a6d41")
)

const (
	mib        = int64(1) << 20
	slotSize   = 320 * mib
	rootSize   = 448 * mib
	partUSRA   = 3
	partUSRB   = 4
	partROOT   = 9
	appID      = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
	machineID  = "5a1e0c7f3b2d4e6f8a9b0c1d2e3f4a5b"
	versionOne = "1.0.0"
)

// Image names a /usr image version the build makes.
type Image struct {
	Version string
	Bad     bool // carries a vmtest-app.service that fails the health gate
}

var images = []Image{{Version: "1.0.0"}, {Version: "2.0.0"}, {Version: "3.0.0"}, {Version: "3.0.0", Bad: true}}

func (im Image) name() string {
	if im.Bad {
		return im.Version + "-bad"
	}
	return im.Version
}

// Artifacts are the built (or cached) inputs of every scenario.
type Artifacts struct {
	Dir      string // the build directory in the cache
	Kernel   string
	Initrd   string
	BaseDisk string            // the GPT disk: 1.0.0 in USR-A (good, priority 1), USR-B empty, ROOT
	USR      map[string]string // image name → ext4 image of that /usr
	Payloads map[string]string // "full-2.0.0", "delta-3.0.0", "delta-3.0.0-bad" → payload file (+ .json)
	Bin      string            // host binaries (payload_generator, ...)
}

// cacheDir is where built images are kept between runs.
func cacheDir() string {
	if d := os.Getenv("UE_VMTEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "update-engine-vmtest")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/update-engine-vmtest"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "update-engine-vmtest")
	}
	return filepath.Join(os.TempDir(), "update-engine-vmtest")
}

type builder struct {
	logf   func(string, ...any)
	cache  string // cacheDir()
	repo   string // module root
	guest  string // internal/vmtest/guest
	tmp    string // scratch, removed when Build returns
	binDir string // the binaries built for the guest and the host
}

// run runs a command, returning its output in the error when it fails.
func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// output runs a command and returns its standard output.
func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Build makes every artifact, reusing the cache when its inputs are
// unchanged: the Debian root file system (keyed by the package list), the
// kernel (by its ABI), and the images, disk and payloads (by the rootfs,
// the kernel, the built binaries and the guest files).
func Build(logf func(string, ...any), repo string) (*Artifacts, error) {
	b := &builder{logf: logf, cache: cacheDir(), repo: repo, guest: filepath.Join(repo, "internal", "vmtest", "guest")}
	if err := os.MkdirAll(b.cache, 0o755); err != nil {
		return nil, err
	}
	var err error
	if b.tmp, err = os.MkdirTemp(b.cache, "tmp-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.tmp)

	rootfs, err := b.rootfs()
	if err != nil {
		return nil, err
	}
	kdir, abi, err := b.kernel()
	if err != nil {
		return nil, err
	}
	// Binaries are built every run (reproducibly: -trimpath, no build id),
	// so their hash keys the images.
	b.binDir = filepath.Join(b.tmp, "bin")
	if err := b.buildBinaries(); err != nil {
		return nil, err
	}
	key, err := b.imagesKey(rootfs, abi)
	if err != nil {
		return nil, err
	}
	a := newArtifacts(filepath.Join(b.cache, "build-"+key), kdir)
	if _, err := os.Stat(filepath.Join(a.Dir, "done")); err == nil {
		logf("vmtest: images cached in %s", a.Dir)
		return a, nil
	}
	logf("vmtest: building images in %s", a.Dir)
	if err := b.buildInCache(a.Dir, rootfs, kdir); err != nil {
		return nil, err
	}
	return a, nil
}

// imagesKey names the images built from rootfs, the kernel of abi, the
// binaries in b.binDir and the guest files that go into the images.
func (b *builder) imagesKey(rootfs, abi string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", builderVersion, filepath.Base(rootfs), abi)
	if err := hashTree(h, b.binDir); err != nil {
		return "", err
	}
	// guest/config travels on each scenario's config disk instead.
	for _, d := range []string{"usr", "initrd"} {
		if err := hashTree(h, filepath.Join(b.guest, d)); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// newArtifacts names the artifacts of the build directory dir, with the
// kernel from kdir.
func newArtifacts(dir, kdir string) *Artifacts {
	a := &Artifacts{
		Dir: dir, Kernel: filepath.Join(kdir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		BaseDisk: filepath.Join(dir, "disk-base.img"), Bin: filepath.Join(dir, "bin"),
		USR: map[string]string{}, Payloads: map[string]string{},
	}
	for _, im := range images {
		a.USR[im.name()] = filepath.Join(dir, "usr-"+im.name()+".img")
	}
	for _, p := range []string{"full-2.0.0", "delta-3.0.0", "delta-3.0.0-bad"} {
		a.Payloads[p] = filepath.Join(dir, p+".payload")
	}
	return a
}

// buildInCache builds every image into dir+".partial", marks it done and
// renames it to dir, then removes the builds of other inputs (older
// sources).
func (b *builder) buildInCache(dir, rootfs, kdir string) error {
	work := dir + ".partial"
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if err := os.Rename(b.binDir, filepath.Join(work, "bin")); err != nil {
		return err
	}
	b.binDir = filepath.Join(work, "bin")
	if err := b.buildAll(work, rootfs, kdir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "done"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(work, dir); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(b.cache, "build-*"))
	for _, o := range old {
		if o != dir {
			os.RemoveAll(o)
		}
	}
	return nil
}

func hashTree(h io.Writer, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", rel, info.Mode())
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
}

// rootfs runs mmdebstrap once per package list.
func (b *builder) rootfs() (string, error) {
	args := []string{"--variant=minbase", "--include=" + strings.Join(guestPackages, ","), "bookworm"}
	sum := sha256.Sum256([]byte(strings.Join(args, " ")))
	out := filepath.Join(b.cache, "rootfs-"+hex.EncodeToString(sum[:])[:12]+".tar")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	b.logf("vmtest: mmdebstrap %s (about 2 minutes)", strings.Join(args, " "))
	tmp := out + ".partial"
	if err := run("mmdebstrap", append(args, tmp)...); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// kernel extracts the Debian cloud kernel and all its modules, flat (the
// initramfs takes the virtio ones), once per kernel ABI.
func (b *builder) kernel() (dir, abi string, err error) {
	deps, err := output("apt-cache", "depends", "linux-image-cloud-amd64")
	if err != nil {
		return "", "", err
	}
	pkg := ""
	for _, l := range strings.Split(deps, "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "Depends: "); ok && strings.HasPrefix(v, "linux-image-") {
			pkg = v
		}
	}
	if pkg == "" {
		return "", "", fmt.Errorf("vmtest: no kernel package in apt-cache depends linux-image-cloud-amd64:\n%s", deps)
	}
	abi = strings.TrimPrefix(pkg, "linux-image-")
	dir = filepath.Join(b.cache, "kernel-"+abi)
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz")); err == nil {
		return dir, abi, nil
	}
	b.logf("vmtest: kernel %s", pkg)
	dl := filepath.Join(b.tmp, "kernel")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", "", err
	}
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("vmtest: apt-get download %s left %v", pkg, debs)
	}
	x := filepath.Join(dl, "x")
	if err := run("dpkg-deb", "-x", debs[0], x); err != nil {
		return "", "", err
	}
	part := dir + ".partial"
	os.RemoveAll(part)
	if err := os.MkdirAll(filepath.Join(part, "modules"), 0o755); err != nil {
		return "", "", err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return "", "", fmt.Errorf("vmtest: no vmlinuz in %s", debs[0])
	}
	if err := copyFile(vmlinuz[0], filepath.Join(part, "vmlinuz")); err != nil {
		return "", "", err
	}
	// Every module, flat, by name: the initramfs picks the ones it needs.
	err = filepath.WalkDir(filepath.Join(x, "lib", "modules"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return err
		}
		return copyFile(p, filepath.Join(part, "modules", d.Name()))
	})
	if err != nil {
		return "", "", err
	}
	os.RemoveAll(dir)
	return dir, abi, os.Rename(part, dir)
}

// moduleOrder lists the modules to load for want, dependencies first, as
// read from each module's .modinfo depends= field.
func moduleOrder(modDir string, want ...string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(m string) error {
		m = strings.ReplaceAll(m, "-", "_")
		if seen[m] {
			return nil
		}
		seen[m] = true
		deps, err := moduleDepends(filepath.Join(modDir, m+".ko"))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, m)
		return nil
	}
	for _, m := range want {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("vmtest: %s has no .modinfo", path)
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

func (b *builder) buildBinaries() error {
	if err := os.MkdirAll(b.binDir, 0o755); err != nil {
		return err
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", b.binDir+"/",
		"./cmd/update_engine", "./cmd/update_engine_client", "./cmd/update_engine_reboot_manager",
		"./cmd/omaha_devserver", "./cmd/payload_generator", "./internal/gptprio/cmd/gptprio")
	cmd.Dir = b.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

func (b *builder) buildAll(dir, rootfs, kdir string) error {
	bin := func(n string) string { return filepath.Join(b.binDir, n) }
	// Throwaway signing key; the public half goes into every image.
	key, pub := filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub.pem")
	if err := run(bin("payload_generator"), "keygen", "--private", key, "--public", pub); err != nil {
		return err
	}
	if err := b.initrd(filepath.Join(dir, "initrd.img"), kdir); err != nil {
		return err
	}
	tree := filepath.Join(b.tmp, "rootfs")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	if err := run("tar", "-C", tree, "-xf", rootfs); err != nil {
		return err
	}
	// What a minimal host does not need in /usr: docs, translations, hwdb.
	for _, p := range []string{"usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
		"usr/share/perl", "usr/lib/udev/hwdb.bin", "usr/share/bash-completion"} {
		if err := os.RemoveAll(filepath.Join(tree, p)); err != nil {
			return err
		}
	}
	usrSize, err := b.usrImageSize(filepath.Join(tree, "usr"))
	if err != nil {
		return err
	}
	b.logf("vmtest: /usr images of %d MiB", usrSize/mib)
	for _, im := range images {
		if err := b.usrImage(filepath.Join(dir, "usr-"+im.name()+".img"), tree, im, pub, usrSize); err != nil {
			return err
		}
	}
	if err := b.rootImage(filepath.Join(b.tmp, "root.img"), tree); err != nil {
		return err
	}
	if err := b.disk(filepath.Join(dir, "disk-base.img"), filepath.Join(dir, "usr-1.0.0.img"), filepath.Join(b.tmp, "root.img")); err != nil {
		return err
	}
	usr := func(n string) string { return filepath.Join(dir, "usr-"+n+".img") }
	gen := func(out string, args ...string) error {
		b.logf("vmtest: payload %s", filepath.Base(out))
		return run(bin("payload_generator"), append(append([]string{"generate", "--key", key}, args...), "-o", out)...)
	}
	if err := gen(filepath.Join(dir, "full-2.0.0.payload"), "--new", usr("2.0.0"), "--version", "2.0.0"); err != nil {
		return err
	}
	if err := gen(filepath.Join(dir, "delta-3.0.0.payload"), "--old", usr("2.0.0"), "--source-version", "2.0.0", "--new", usr("3.0.0"), "--version", "3.0.0"); err != nil {
		return err
	}
	return gen(filepath.Join(dir, "delta-3.0.0-bad.payload"), "--old", usr("2.0.0"), "--source-version", "2.0.0", "--new", usr("3.0.0-bad"), "--version", "3.0.0")
}

// initrd writes the initramfs: static busybox, gptprio, the virtio block
// modules in dependency order, and guest/initrd/init.
func (b *builder) initrd(out, kdir string) error {
	order, err := moduleOrder(filepath.Join(kdir, "modules"), "virtio_pci", "virtio_blk")
	if err != nil {
		return err
	}
	b.logf("vmtest: initramfs modules %s", strings.Join(order, " "))
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("vmtest: busybox missing (apt-get install busybox-static): %v", err)
	}
	if err := requireStatic(busybox); err != nil {
		return fmt.Errorf("%w (apt-get install busybox-static)", err)
	}
	c := newCpio()
	for _, d := range []string{"bin", "dev", "proc", "sys", "run", "newroot", "etc", "lib", "lib/modules"} {
		c.dir(d)
	}
	c.file("bin/busybox", busybox, 0o755)
	for _, app := range []string{"sh", "mount", "insmod", "sleep", "cat", "mkdir", "switch_root", "poweroff", "grep", "echo"} {
		c.symlink("bin/"+app, "busybox")
	}
	c.file("bin/gptprio", filepath.Join(b.binDir, "gptprio"), 0o755)
	for _, m := range order {
		c.file("lib/modules/"+m+".ko", filepath.Join(kdir, "modules", m+".ko"), 0o644)
	}
	c.data("etc/modules.order", []byte(strings.Join(order, "\n")+"\n"), 0o644)
	c.file("init", filepath.Join(b.guest, "initrd", "init"), 0o755)
	if c.err != nil {
		return c.err
	}
	return os.WriteFile(out, c.bytes(), 0o644)
}

// requireStatic fails unless the ELF file at path has no interpreter (it
// runs in an initramfs without a libc).
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("vmtest: %s is dynamically linked", path)
		}
	}
	return nil
}

func (b *builder) usrImageSize(usr string) (int64, error) {
	var total int64
	err := filepath.WalkDir(usr, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += (info.Size() + 4095) / 4096 * 4096
		return nil
	})
	if err != nil {
		return 0, err
	}
	bins, err := dirSize(b.binDir)
	if err != nil {
		return 0, err
	}
	// Content + our binaries + 25% and 16 MiB for metadata and the
	// difference between versions, whole MiB.
	size := (total+bins)*5/4 + 16*mib
	size = (size + mib - 1) / mib * mib
	if size > slotSize {
		return 0, fmt.Errorf("vmtest: /usr needs %d MiB, the slots have %d", size/mib, slotSize/mib)
	}
	return size, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return err
	})
	return n, err
}

// usrImage builds one version's /usr: the Debian /usr plus the update
// engine installed as a Flatcar image has it, and the vmtest harness.
func (b *builder) usrImage(out, tree string, im Image, pub string, size int64) error {
	u := fileTree(filepath.Join(b.tmp, "usr-"+im.name()))
	os.RemoveAll(string(u))
	if err := run("cp", "-a", filepath.Join(tree, "usr"), string(u)); err != nil {
		return err
	}
	if err := b.installEngine(u, im, pub); err != nil {
		return err
	}
	if err := b.installHarness(u, im); err != nil {
		return err
	}
	if im.Version != versionOne {
		// Each release changes some content (the delta carries it).
		if err := u.put("share/vmtest/release-data", releaseData(im), 0o644); err != nil {
			return err
		}
	}
	if err := mkfsUSR(out, string(u), size); err != nil {
		return err
	}
	return os.RemoveAll(string(u))
}

// fileTree is a directory being filled for an image. Its methods replace
// what is at rel, creating the parent directories.
type fileTree string

func (u fileTree) put(rel string, data []byte, mode os.FileMode) error {
	p := filepath.Join(string(u), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	os.Remove(p)
	return os.WriteFile(p, data, mode)
}

func (u fileTree) copy(rel, src string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return u.put(rel, data, mode)
}

func (u fileTree) link(rel, target string) error {
	p := filepath.Join(string(u), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	os.Remove(p)
	return os.Symlink(target, p)
}

// installEngine puts the update engine into /usr u as a Flatcar image has
// it: binaries, units, D-Bus policy, the payload key, the release file,
// the image's update.conf and the post-install hook.
func (b *builder) installEngine(u fileTree, im Image, pub string) error {
	dist := filepath.Join(b.repo, "dist")
	return firstError(
		u.copy("sbin/update_engine", filepath.Join(b.binDir, "update_engine"), 0o755),
		u.copy("sbin/update_engine_reboot_manager", filepath.Join(b.binDir, "update_engine_reboot_manager"), 0o755),
		u.copy("bin/update_engine_client", filepath.Join(b.binDir, "update_engine_client"), 0o755),
		u.copy("bin/omaha_devserver", filepath.Join(b.binDir, "omaha_devserver"), 0o755),
		u.copy("lib/systemd/system/update-engine.service", filepath.Join(dist, "update-engine.service"), 0o644),
		u.copy("lib/systemd/system/update-engine-reboot-manager.service", filepath.Join(dist, "update-engine-reboot-manager.service"), 0o644),
		u.link("lib/systemd/system/multi-user.target.wants/update-engine.service", "../update-engine.service"),
		u.link("lib/systemd/system/multi-user.target.wants/update-engine-reboot-manager.service", "../update-engine-reboot-manager.service"),
		u.copy("share/dbus-1/system.d/com.coreos.update1.conf", filepath.Join(dist, "com.coreos.update1.conf"), 0o644),
		u.copy("lib/tmpfiles.d/update-engine.conf", filepath.Join(dist, "update-engine.tmpfiles.conf"), 0o644),
		u.copy("share/update_engine/update-payload-key.pub.pem", pub, 0o644),
		u.put("share/flatcar/release", []byte(fmt.Sprintf("FLATCAR_RELEASE_VERSION=%s\nFLATCAR_RELEASE_BOARD=amd64-usr\nFLATCAR_RELEASE_APPID=%s\n", im.Version, appID)), 0o644),
		// The image's defaults: a short health gate that watches the
		// application unit.
		u.put("share/flatcar/update.conf", []byte("GROUP=stable\nUPDATE_ENGINE_HEALTH_DELAY=5s\nUPDATE_ENGINE_HEALTH_UNITS=vmtest-app.service\n"), 0o644),
		// Flatcar's post-install hook at the image root, run from the new
		// slot mounted read-only.
		u.put("postinst", []byte("#!/bin/sh\necho \"VMTEST postinst target=$1 version=$NEW_VERSION\" >/dev/console\nsleep 8\nexit 0\n"), 0o755),
		u.put("share/vmtest/version", []byte(im.name()+"\n"), 0o644),
	)
}

// firstError is the first of errs that is not nil. Its arguments are the
// steps of a list, all taken whatever their outcome.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// installHarness puts the harness units and scripts of guest/usr into /usr
// u, enabled; a bad image's application unit fails.
func (b *builder) installHarness(u fileTree, im Image) error {
	src := filepath.Join(b.guest, "usr")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		exec := "/bin/true"
		if im.Bad {
			exec = "/bin/sh -c 'echo \"VMTEST app: this image is broken\"; exit 1'"
		}
		data = bytes.ReplaceAll(data, []byte("@APP_EXEC@"), []byte(exec))
		info, _ := d.Info()
		return u.put(rel, data, info.Mode().Perm())
	})
	steps := []error{err}
	for _, unit := range []string{"vmtest-omaha.service", "vmtest-events.service", "vmtest-app.service", "vmtest-harness.service", "vmtest-early.service"} {
		steps = append(steps, u.link("lib/systemd/system/multi-user.target.wants/"+unit, "../"+unit))
	}
	steps = append(steps, u.link("lib/systemd/system/sysinit.target.wants/vmtest-setup.service", "../vmtest-setup.service"))
	return firstError(steps...)
}

// releaseData is 4 MiB derived from the image's name, so that each release
// differs from the others.
func releaseData(im Image) []byte {
	blob := make([]byte, 4*mib)
	seed := sha256.Sum256([]byte(im.name()))
	for i := 0; i < len(blob); i += 32 {
		s := sha256.Sum256(append(seed[:], byte(i), byte(i>>8), byte(i>>16)))
		copy(blob[i:], s[:])
	}
	return blob
}

// mkfsUSR makes out an ext4 image of size bytes holding dir: deterministic
// (fixed UUID, hash seed and time) and without a journal, as it is only
// ever mounted read-only.
func mkfsUSR(out, dir string, size int64) error {
	if err := emptyFile(out, size); err != nil {
		return err
	}
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-L", "USR", "-O", "^has_journal", "-b", "4096", "-m", "0",
		"-U", "8f3b3b2e-6f7a-4d55-9b1e-2c7f4c1c9a10", "-E", "hash_seed=1b4e28ba-2fa1-11d2-883f-0016d3cca427,root_owner=0:0",
		"-d", dir, out)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %v\n%s", out, err, o)
	}
	return nil
}

// emptyFile makes path an empty (sparse) file of size bytes.
func emptyFile(path string, size int64) error {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return err
	}
	return os.Truncate(path, size)
}

// rootImage builds ROOT: everything of the root file system but /usr (an
// empty mount point), the state update_engine keeps, and host settings.
func (b *builder) rootImage(out, tree string) error {
	r := filepath.Join(b.tmp, "root")
	os.RemoveAll(r)
	if err := os.MkdirAll(r, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(tree)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == "usr" {
			continue
		}
		if err := run("cp", "-a", filepath.Join(tree, e.Name()), r); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(r, "usr"), 0o755); err != nil {
		return err
	}
	for _, p := range []string{
		// Services a test host does not need, which slow its boot.
		"etc/systemd/system/multi-user.target.wants/etcd.service",
		"etc/systemd/system/multi-user.target.wants/e2scrub_reap.service",
		"etc/systemd/system/timers.target.wants",
	} {
		if err := os.RemoveAll(filepath.Join(r, p)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/machine-id": machineID + "\n",
		// mmdebstrap leaves no /etc/hosts; etcd resolves "localhost" (and
		// the guest has no DNS).
		"etc/hosts":       "127.0.0.1 localhost vmtest\n::1 localhost ip6-localhost ip6-loopback\n",
		"etc/resolv.conf": "",
		"etc/hostname":    "vmtest\n",
		// The engine finds its disk from usr=PARTUUID= on the command line;
		// scheduled checks are off, the harness asks for them.
		"etc/default/update-engine": "UPDATE_ENGINE_ARGS=--auto-check=false\n",
		"etc/fstab":                 "# / and /usr are mounted by the initramfs\n",
	}
	for rel, data := range files {
		p := filepath.Join(r, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return err
		}
	}
	if err := emptyFile(out, rootSize); err != nil {
		return err
	}
	if err := run("mkfs.ext4", "-q", "-F", "-L", "ROOT", "-d", r, out); err != nil {
		return err
	}
	return os.RemoveAll(r)
}

// disk lays out Flatcar's GPT (1 EFI-SYSTEM, 3 USR-A, 4 USR-B, 9 ROOT)
// with 1.0.0 in USR-A, good and preferred, and USR-B empty, as a freshly
// installed Flatcar disk has them.
func (b *builder) disk(out, usrA, root string) error {
	good := uint64(1)<<gpt.SuccessfulShift | 1<<gpt.PriorityShift
	parts := []gpt.Partition{
		{Index: 1, Name: "EFI-SYSTEM", Type: gpt.TypeEFISystem, Size: 8 * mib},
		{Index: partUSRA, Name: "USR-A", Type: gpt.TypeCoreOSUsr, GUID: guidUSRA, Size: slotSize, Attributes: good},
		{Index: partUSRB, Name: "USR-B", Type: gpt.TypeCoreOSUsr, GUID: guidUSRB, Size: slotSize},
		{Index: partROOT, Name: "ROOT", Type: gpt.TypeCoreOSResize, GUID: guidROOT, Size: rootSize},
	}
	size := 2 * mib
	for _, p := range parts {
		size += p.Size
	}
	tab, err := gpt.New(size, 512, parts)
	if err != nil {
		return err
	}
	if err := emptyFile(out, size); err != nil {
		return err
	}
	d, err := gpt.Open(out, os.O_RDWR, 512)
	if err != nil {
		return err
	}
	if err := d.Create(tab); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	for _, w := range []struct {
		part int
		src  string
	}{{partUSRA, usrA}, {partROOT, root}} {
		e := tab.Entries[w.part-1]
		if err := writeAt(out, w.src, int64(e.FirstLBA)*512); err != nil {
			return err
		}
	}
	return nil
}

func writeAt(dst, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.NewOffsetWriter(out, off), bufio.NewReaderSize(in, 1<<20)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// cpio writes a newc archive (the initramfs format) in memory.
type cpio struct {
	buf bytes.Buffer
	ino int
	err error
}

func newCpio() *cpio { return &cpio{ino: 1} }

func (c *cpio) entry(name string, mode uint32, data []byte) {
	c.ino++
	fmt.Fprintf(&c.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.buf.WriteString(name)
	c.buf.WriteByte(0)
	c.pad()
	c.buf.Write(data)
	c.pad()
}

func (c *cpio) pad() {
	for c.buf.Len()%4 != 0 {
		c.buf.WriteByte(0)
	}
}

func (c *cpio) dir(name string)                         { c.entry(name, 0o040755, nil) }
func (c *cpio) symlink(name, target string)             { c.entry(name, 0o120777, []byte(target)) }
func (c *cpio) data(name string, d []byte, perm uint32) { c.entry(name, 0o100000|perm, d) }
func (c *cpio) file(name, src string, perm uint32) {
	d, err := os.ReadFile(src)
	if err != nil && c.err == nil {
		c.err = err
	}
	c.data(name, d, perm)
}

func (c *cpio) bytes() []byte {
	c.entry("TRAILER!!!", 0, nil)
	return c.buf.Bytes()
}
