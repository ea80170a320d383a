package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Accel is the QEMU accelerator: "kvm" when a KVM guest really boots here
// within a few seconds, else "tcg" (VM-NOTES: /dev/kvm may exist on a host
// without nested virtualisation, and its guests then hang).
func Accel(kernel, initrd string, logf func(string, ...any)) string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		logf("vmtest: no /dev/kvm; using TCG")
		return "tcg"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "accel=kvm", "-cpu", "host", "-m", "256", "-smp", "1",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1 vmtest.probe",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none", "-no-reboot")
	out, _ := cmd.Output()
	if strings.Contains(string(out), "vmtest-initrd: probe ok") {
		logf("vmtest: KVM works")
		return "kvm"
	}
	logf("vmtest: a KVM guest did not boot within 15 s; using TCG")
	return "tcg"
}

// VMConfig is one power-on of the guest.
type VMConfig struct {
	Accel    string
	Kernel   string
	Initrd   string
	Disk     string // the GPT disk (read-write)
	Payloads string // the scenario's config and payload disk (read-only)
	Serial   io.Writer
	MemMiB   int
}

// VM is a running QEMU. Its serial console is read line by line; Expect
// waits for lines from the position of the previous match on.
type VM struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu    sync.Mutex
	lines []string // guarded by mu
	cond  *sync.Cond
	eof   bool // guarded by mu
	pos   int  // next line Expect looks at (test goroutine only)
}

// Start powers the guest on. The guest has one vCPU, no network device,
// and -no-reboot: a reboot in the guest ends the QEMU process, and the
// test powers it on again.
func Start(c VMConfig) (*VM, error) {
	mem := c.MemMiB
	if mem == 0 {
		mem = 768
	}
	cpu := "max"
	if c.Accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-machine", "accel=" + c.Accel, "-cpu", cpu, "-smp", "1", "-m", fmt.Sprint(mem),
		"-kernel", c.Kernel, "-initrd", c.Initrd,
		"-append", "console=ttyS0 panic=-1 quiet systemd.show_status=1 systemd.journald.forward_to_console=1 systemd.log_color=0",
		// cache=writeback: every write the guest submits is in the host
		// file (the host page cache) once QEMU completes it; kill -9 of
		// QEMU loses only what is still in the guest's own page cache.
		"-drive", "file=" + c.Disk + ",format=raw,if=virtio,cache=writeback",
		"-drive", "file=" + c.Payloads + ",format=raw,if=virtio,readonly=on",
		"-nic", "none", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	vm := &VM{cmd: cmd, done: make(chan struct{})}
	vm.cond = sync.NewCond(&vm.mu)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l := strings.TrimRight(sc.Text(), "\r")
			if c.Serial != nil {
				fmt.Fprintln(c.Serial, l)
			}
			vm.mu.Lock()
			vm.lines = append(vm.lines, l)
			vm.cond.Broadcast()
			vm.mu.Unlock()
		}
		vm.err = cmd.Wait()
		vm.mu.Lock()
		vm.eof = true
		vm.cond.Broadcast()
		vm.mu.Unlock()
		close(vm.done)
	}()
	return vm, nil
}

// ErrExited is returned by Expect when QEMU ended before the line came.
var ErrExited = fmt.Errorf("vmtest: the VM powered off")

// Expect waits up to timeout for a serial line matching re, from the line
// after the previous match on; it returns the line and its submatches.
func (vm *VM) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		vm.mu.Lock()
		vm.cond.Broadcast()
		vm.mu.Unlock()
	})
	defer timer.Stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for {
		for ; vm.pos < len(vm.lines); vm.pos++ {
			if m := re.FindStringSubmatch(vm.lines[vm.pos]); m != nil {
				vm.pos++
				return m, nil
			}
		}
		if vm.eof {
			return nil, fmt.Errorf("%w while waiting for /%s/", ErrExited, re)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("vmtest: no serial line /%s/ within %v", re, timeout)
		}
		vm.cond.Wait()
	}
}

// Lines returns every serial line so far that matches re.
func (vm *VM) Lines(re *regexp.Regexp) [][]string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	var out [][]string
	for _, l := range vm.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// WaitExit waits up to timeout for QEMU to end by itself (a guest reboot
// or power-off, with -no-reboot).
func (vm *VM) WaitExit(timeout time.Duration) error {
	select {
	case <-vm.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("vmtest: the VM did not power off within %v", timeout)
	}
}

// Kill is a power cut: SIGKILL to QEMU, then wait for it to be gone.
func (vm *VM) Kill() {
	_ = vm.cmd.Process.Kill()
	<-vm.done
}

// Rewind makes the next Expect search this boot's serial lines from the
// first again, and returns how many had been read.
func (vm *VM) Rewind() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	p := vm.pos
	vm.pos = 0
	return p
}

// Pos is how many serial lines Expect has read.
func (vm *VM) Pos() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.pos
}
