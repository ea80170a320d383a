//go:build crashpoints

package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
)

var (
	mu      sync.Mutex // guards n
	n       int
	at, _   = strconv.Atoi(os.Getenv("UPDATE_ENGINE_CRASH_AT"))
	logPath = os.Getenv("UPDATE_ENGINE_CRASH_LOG")
)

// Hit counts the durable write named name, logs it, and kills the
// process before it when it is the chosen one.
func Hit(name string) {
	mu.Lock()
	defer mu.Unlock()
	n++
	if logPath != "" {
		if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%d %s\n", n, name)
			f.Close()
		}
	}
	if n == at {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
