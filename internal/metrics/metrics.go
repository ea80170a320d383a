// Package metrics exposes the update engine's Prometheus metrics. It is the
// only package that imports github.com/prometheus/client_golang (a deps test
// guards this); everything else calls the small typed API of *Metrics.
//
// Metrics live in their own registry, never the global default one. A nil
// *Metrics is valid and records nothing, so callers need not check. The
// daemon feeds it from the engine's observations (engine.Observer).
//
// Exposed series (all prefixed update_engine_):
//
//	checks_total{result}                  update checks by update.CheckResult
//	downloaded_bytes_total                payload bytes received over HTTP
//	written_bytes_total                   bytes written to the passive slot
//	apply_throughput_bytes_per_second     rate of the last ObserveApply
//	operation_duration_seconds{type}      histogram, one payload operation
//	throttled_seconds_total               time writes spent blocked by the I/O limit
//	io_write_limit_bytes_per_second       the passive slot's write limit now (0 = none); moves when adaptive
//	io_limit_error                        1 while a configured write limit could not be applied (writes unthrottled)
//	io_pressure_ratio                     adaptive limit: the other workloads' worst PSI "some" share, last interval
//	resumes_total                         downloads resumed from a checkpoint
//	errors_total{code,name}               failures by update_engine code (SPEC.md 7, flags stripped) and its name
//	status{status}                        1 for the current D-Bus status string, 0 for the others
//	status_code                           the current status as its enum number
//	last_check_timestamp_seconds          Unix time of the last finished check
//	flip_to_good_seconds                  last time from the GPT flip to marking the slot good
//	info{version,slot}                    1, labelled with the running version and booted slot
//
// plus the Go runtime and process collectors (go_*, process_*).
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

const namespace = "update_engine"

// Metrics holds the collectors. Its methods are safe for concurrent use
// (the collectors synchronise themselves); all fields are set once by New.
type Metrics struct {
	reg        *prometheus.Registry
	checks     *prometheus.CounterVec
	downloaded prometheus.Counter
	written    prometheus.Counter
	throughput prometheus.Gauge
	opDuration *prometheus.HistogramVec
	throttled  prometheus.Counter
	ioLimit    prometheus.Gauge
	ioPressure prometheus.Gauge
	ioLimitErr prometheus.Gauge
	resumes    prometheus.Counter
	errors     *prometheus.CounterVec
	status     *prometheus.GaugeVec
	statusCode prometheus.Gauge
	lastCheck  prometheus.Gauge
	flipToGood prometheus.Gauge
	info       *prometheus.GaugeVec
	handler    http.Handler
}

// New returns Metrics registered in a fresh registry, with the status set
// to UPDATE_STATUS_IDLE.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "checks_total", Help: "Update checks by result."}, []string{"result"}),
		downloaded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "downloaded_bytes_total", Help: "Payload bytes downloaded."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "written_bytes_total", Help: "Bytes written to the passive slot."}),
		throughput: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "apply_throughput_bytes_per_second", Help: "Apply throughput of the last measured interval."}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace,
			Name: "operation_duration_seconds", Help: "Time to apply one payload operation, by operation type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"type"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "throttled_seconds_total", Help: "Time writes spent blocked under the I/O limit."}),
		ioLimit: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "io_write_limit_bytes_per_second", Help: "Write limit on the passive slot now (0 = none); an adaptive limit moves."}),
		ioPressure: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "io_pressure_ratio", Help: "Adaptive I/O limit: the other workloads' worst PSI io \"some\" share over the last interval."}),
		resumes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "resumes_total", Help: "Downloads resumed from a checkpoint."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "errors_total", Help: "Failed updates by update_engine error code (flag bits stripped) and its name."}, []string{"code", "name"}),
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace,
			Name: "status", Help: "1 for the current update status, 0 for the others."}, []string{"status"}),
		statusCode: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "status_code", Help: "Current update status as its enum number (0 = IDLE)."}),
		lastCheck: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "last_check_timestamp_seconds", Help: "Unix time of the last finished update check."}),
		flipToGood: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "flip_to_good_seconds", Help: "Time from the GPT flip to marking the new slot good, last update."}),
	}
	m.ioLimitErr = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
		Name: "io_limit_error", Help: "1 while a configured I/O write limit could not be applied: writes to the passive slot are unthrottled."})
	reg.MustRegister(m.ioLimitErr)
	m.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace,
		Name: "info", Help: "Always 1; the labels are the running version and the booted slot."}, []string{"version", "slot"})
	reg.MustRegister(m.checks, m.downloaded, m.written, m.throughput, m.opDuration,
		m.throttled, m.ioLimit, m.ioPressure, m.resumes, m.errors, m.status, m.statusCode, m.lastCheck, m.flipToGood, m.info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the label values that are known up front, so a scrape
	// shows zeros rather than nothing.
	for _, r := range []update.CheckResult{update.CheckUpdateAvailable, update.CheckNoUpdate, update.CheckError} {
		m.checks.WithLabelValues(string(r))
	}
	m.SetStatus(update1.Idle)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return m
}

// Handler serves the metrics in the Prometheus text format (mount it at
// /metrics). A nil *Metrics serves 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// SetInfo records the running version and the booted slot ("A" or "B"),
// which stay the same until the next boot: a fleet's dashboards count
// hosts by version with them.
func (m *Metrics) SetInfo(version, slot string) {
	if m == nil {
		return
	}
	m.info.Reset()
	m.info.WithLabelValues(version, slot).Set(1)
}

// CheckDone counts one finished update check and records its time.
func (m *Metrics) CheckDone(r update.CheckResult, at time.Time) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(string(r)).Inc()
	m.lastCheck.Set(float64(at.UnixNano()) / 1e9)
}

// AddDownloaded counts n payload bytes received.
func (m *Metrics) AddDownloaded(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.downloaded.Add(float64(n))
}

// AddWritten counts n bytes written to the passive slot.
func (m *Metrics) AddWritten(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.written.Add(float64(n))
}

// ObserveApply sets the apply throughput from n bytes applied in d.
func (m *Metrics) ObserveApply(n int64, d time.Duration) {
	if m == nil || d <= 0 {
		return
	}
	m.throughput.Set(float64(n) / d.Seconds())
}

// ObserveOperation records the time one payload operation took; opType is
// its type name (e.g. "REPLACE_XZ"), a small fixed set.
func (m *Metrics) ObserveOperation(opType string, d time.Duration) {
	if m == nil {
		return
	}
	m.opDuration.WithLabelValues(opType).Observe(d.Seconds())
}

// AddThrottled adds time that writes spent blocked under the I/O limit.
func (m *Metrics) AddThrottled(d time.Duration) {
	if m == nil || d <= 0 {
		return
	}
	m.throttled.Add(d.Seconds())
}

// SetIOLimit records the write limit in force (bytes/s; 0 = none) and,
// for an adaptive limit, the pressure it last measured (0 to 1).
func (m *Metrics) SetIOLimit(bps uint64, pressure float64) {
	if m == nil {
		return
	}
	m.ioLimit.Set(float64(bps))
	m.ioPressure.Set(pressure)
}

// SetIOLimitError records whether a configured write limit could not be
// applied (the daemon logs why and what to do).
func (m *Metrics) SetIOLimitError(failed bool) {
	if m == nil {
		return
	}
	v := 0.0
	if failed {
		v = 1
	}
	m.ioLimitErr.Set(v)
}

// Resumed counts one download resumed from a checkpoint.
func (m *Metrics) Resumed() {
	if m == nil {
		return
	}
	m.resumes.Inc()
}

// Error counts one failure by its update_engine code; the labels are the
// decimal code without flag bits (e.g. "9" for 268435465) and its name
// ("DownloadTransferError").
func (m *Metrics) Error(c omaha.Code) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(strconv.Itoa(int(c.Base())), c.Name()).Inc()
}

// SetStatus records the current update status.
func (m *Metrics) SetStatus(s update1.Op) {
	if m == nil {
		return
	}
	for u := update1.Idle; u <= update1.ReportingErrorEvent; u++ {
		v := 0.0
		if u == s {
			v = 1
		}
		m.status.WithLabelValues(u.String()).Set(v)
	}
	m.statusCode.Set(float64(s))
}

// ObserveFlipToGood records the time from the GPT flip to marking the new
// slot good.
func (m *Metrics) ObserveFlipToGood(d time.Duration) {
	if m == nil {
		return
	}
	m.flipToGood.Set(d.Seconds())
}
