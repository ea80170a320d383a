package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// RebootManager holds update_engine_reboot_manager's metrics, in their own
// registry (the reboot manager is its own process). It implements
// rebootmgr.Metrics; cmd/update_engine_reboot_manager wires it in.
//
// Exposed series (all prefixed update_engine_reboot_manager_):
//
//	strategy{strategy}                    1, labelled with the reboot strategy in force
//	lock_held                             1 while this host holds its reboot slot (etcd-lock, fleetlock)
//	lock_wait_seconds                     histogram, first attempt to take the slot to success
//	reboots_requested_total               reboots asked of logind
//
// plus the Go runtime and process collectors (go_*, process_*).
type RebootManager struct {
	strategy *prometheus.GaugeVec
	lockHeld prometheus.Gauge
	lockWait prometheus.Histogram
	reboots  prometheus.Counter
	handler  http.Handler
}

const rebootNamespace = "update_engine_reboot_manager"

// NewRebootManager returns the reboot manager's metrics in a fresh
// registry.
func NewRebootManager() *RebootManager {
	reg := prometheus.NewRegistry()
	r := &RebootManager{
		strategy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: rebootNamespace,
			Name: "strategy", Help: "Always 1; the label is the reboot strategy in force."}, []string{"strategy"}),
		lockHeld: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: rebootNamespace,
			Name: "lock_held", Help: "1 while this host holds its fleet reboot slot, else 0."}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: rebootNamespace,
			Name: "lock_wait_seconds", Help: "Time from the first attempt to take the reboot slot to taking it.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		reboots: prometheus.NewCounter(prometheus.CounterOpts{Namespace: rebootNamespace,
			Name: "reboots_requested_total", Help: "Reboots asked of logind."}),
	}
	reg.MustRegister(r.strategy, r.lockHeld, r.lockWait, r.reboots,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return r
}

// Handler serves the metrics in the Prometheus text format.
func (r *RebootManager) Handler() http.Handler { return r.handler }

// SetStrategy records the reboot strategy in force.
func (r *RebootManager) SetStrategy(s string) {
	r.strategy.Reset()
	r.strategy.WithLabelValues(s).Set(1)
}

// SetLockHeld records whether this host holds its reboot slot.
func (r *RebootManager) SetLockHeld(held bool) {
	v := 0.0
	if held {
		v = 1
	}
	r.lockHeld.Set(v)
}

// ObserveLockWait records one wait for the reboot slot.
func (r *RebootManager) ObserveLockWait(d time.Duration) { r.lockWait.Observe(d.Seconds()) }

// RebootRequested counts one reboot asked of logind.
func (r *RebootManager) RebootRequested() { r.reboots.Inc() }

// ServeUnix serves /metrics on a Unix socket at path (ListenUnix) until
// ctx is done.
func (r *RebootManager) ServeUnix(ctx context.Context, path string) error {
	ln, err := ListenUnix(path)
	if err != nil {
		return err
	}
	return serve(ctx, ln, r.handler)
}
