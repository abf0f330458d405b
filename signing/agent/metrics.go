package agent

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Stages the agent times (Timings and the mohr_agent_stage_seconds histogram).
const (
	StageCardIO    = "card_io"   // the whole on-card signature call: SELECT, VERIFY, MSE:SET, PSO and transport
	StageCardSign  = "card_sign" // the PSO: COMPUTE DIGITAL SIGNATURE round trip alone (the card's own work)
	StageCMSBuild  = "cms_build" // building the CAdES B-B around the card's signature, audit record included
	StageNetwork   = "network"   // submission round trip minus the exchange's own processing
	StageIngestion = "ingestion" // the exchange's processing, as its Server-Timing header reports it
	StagePINEntry  = "pin_entry" // waiting for the physician to type the PIN (excluded from Mohr's overhead)
	StageTotal     = "total"     // one document, request to result
)

// Metrics are the agent's Prometheus metrics, in a registry of their own. Labels never carry a PIN, a
// document or a certificate.
type Metrics struct {
	reg        *prometheus.Registry
	stage      *prometheus.HistogramVec
	signatures *prometheus.CounterVec
	sessions   *prometheus.CounterVec
	active     prometheus.Gauge
	remaining  prometheus.Gauge
	requests   *prometheus.CounterVec
	pinFail    prometheus.Counter
}

// NewMetrics returns the agent's metrics in a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m.stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mohr_agent_stage_seconds", Help: "Time per document spent in each stage of signing and submission.", Buckets: buckets,
	}, []string{"stage"})
	m.signatures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mohr_agent_signatures_total", Help: "Documents processed, by outcome.",
	}, []string{"result"})
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mohr_agent_sessions_ended_total", Help: "Signing sessions ended, by reason.",
	}, []string{"reason"})
	m.active = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mohr_agent_session_active", Help: "1 while a signing session is open."})
	m.remaining = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mohr_agent_session_remaining_signatures", Help: "Signatures left in the open session."})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mohr_agent_http_requests_total", Help: "Local API requests, by route and status code.",
	}, []string{"route", "code"})
	m.pinFail = prometheus.NewCounter(prometheus.CounterOpts{Name: "mohr_agent_pin_failures_total", Help: "Wrong or blocked PIN reports from the card."})
	m.reg.MustRegister(m.stage, m.signatures, m.sessions, m.active, m.remaining, m.requests, m.pinFail)
	return m
}

// Registry returns the registry, for tests and for adding process collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *Metrics) observe(stage string, d time.Duration) {
	if m != nil && d > 0 {
		m.stage.WithLabelValues(stage).Observe(d.Seconds())
	}
}

func (m *Metrics) result(r string) {
	if m != nil {
		m.signatures.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) sessionEnded(reason string) {
	if m != nil {
		m.sessions.WithLabelValues(reason).Inc()
		m.active.Set(0)
		m.remaining.Set(0)
	}
}

func (m *Metrics) sessionState(remaining int) {
	if m != nil {
		m.active.Set(1)
		m.remaining.Set(float64(remaining))
	}
}

func (m *Metrics) request(route string, code int) {
	if m != nil {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) pinFailed() {
	if m != nil {
		m.pinFail.Inc()
	}
}
