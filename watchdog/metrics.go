package watchdog

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the watchdog's Prometheus collectors, on a registry of its own.
type metrics struct {
	reg *prometheus.Registry

	leader      prometheus.Gauge
	backlog     *prometheus.GaugeVec
	desired     *prometheus.GaugeVec
	containers  *prometheus.GaugeVec // by state: starting, running, draining
	launched    *prometheus.CounterVec
	launchErrs  *prometheus.CounterVec
	exited      *prometheus.CounterVec // by reason
	failed      *prometheus.CounterVec // exits that count against the stage, by reason
	backoff     *prometheus.GaugeVec
	reaction    *prometheus.HistogramVec
	tick        prometheus.Histogram
	observeErrs *prometheus.CounterVec
	slots       prometheus.Gauge
	slotsUsed   prometheus.Gauge
	gpus        prometheus.Gauge
	gpusUsed    prometheus.Gauge
}

const ns = "pero_watchdog"

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "leader",
		Help: "1 while this watchdog leads, 0 while it stands by."})
	m.backlog = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "backlog_messages",
		Help: "Messages ready or unacknowledged in the stage's queue at the last poll."}, []string{"stage"})
	m.desired = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "desired_containers",
		Help: "Containers the stage should have working on its backlog."}, []string{"stage"})
	m.containers = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "containers",
		Help: "Live containers of the stage by state: starting (launched, not consuming yet), running, draining."},
		[]string{"stage", "state"})
	m.launched = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "launched_total",
		Help: "Containers launched."}, []string{"stage"})
	m.launchErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "launch_errors_total",
		Help: "Launches the backend refused."}, []string{"stage"})
	m.exited = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "exited_total",
		Help: "Containers reaped, by exit reason (ok, internal, config, unavailable, model, function, killed, other)."},
		[]string{"stage", "reason"})
	m.failed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "failed_total",
		Help: "Containers whose exit counts against the stage (quick non-zero exits, configuration and model errors)."},
		[]string{"stage", "reason"})
	m.backoff = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "backoff_seconds",
		Help: "Seconds until a failing stage may launch again; 0 when it may."}, []string{"stage"})
	m.reaction = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "reaction_seconds",
		Help:    "From the first poll that saw a backlog no runner consumed to the first poll that saw a runner of the stage consuming.",
		Buckets: []float64{0.5, 1, 1.5, 2, 3, 5, 8, 13, 21, 34, 60, 120}}, []string{"stage"})
	m.tick = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "poll_seconds",
		Help:    "Duration of one poll: observe, reap, decide and launch.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)})
	m.observeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "observe_errors_total",
		Help: "Failed reads of the watchdog's sources (zookeeper, broker, backend)."}, []string{"source"})
	m.slots = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "cpu_slots",
		Help: "CPU slots of the capacity; 0 means unlimited."})
	m.slotsUsed = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "cpu_slots_used",
		Help: "CPU slots taken by live containers."})
	m.gpus = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "gpus",
		Help: "GPUs in the ledger."})
	m.gpusUsed = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "gpus_used",
		Help: "GPUs held by live containers (a shared GPU counts once)."})
	m.reg.MustRegister(m.leader, m.backlog, m.desired, m.containers, m.launched, m.launchErrs, m.exited,
		m.failed, m.backoff, m.reaction, m.tick, m.observeErrs, m.slots, m.slotsUsed, m.gpus, m.gpusUsed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// forget drops the series of a stage that no longer exists.
func (m *metrics) forget(stage string) {
	m.backlog.DeleteLabelValues(stage)
	m.desired.DeleteLabelValues(stage)
	m.backoff.DeleteLabelValues(stage)
	for _, s := range []string{stateStarting, stateRunning, stateDraining} {
		m.containers.DeleteLabelValues(stage, s)
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
