package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are per Server (their own registry), so several servers can live in one process and tests.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	// verifications counts validation outcomes by where they were asked for ("api": POST /v1/verify,
	// "page": the verification page) and ETSI EN 319 102-1 indication.
	verifications *prometheus.CounterVec
	handler       http.Handler
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mohr_api_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mohr_api_request_duration_seconds", Help: "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mohr_api_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	m.verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mohr_verifications_total", Help: "Signature validations by source (api, page) and indication.",
	}, []string{"source", "indication"})
	m.reg.MustRegister(m.requests, m.duration, m.inflight, m.verifications,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// observe records one request. route is the chi pattern (bounded cardinality), never the raw path.
func (m *metrics) observe(method, route string, status int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions:
	default:
		method = "other" // arbitrary methods would make unbounded label values
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

// verified counts one validation outcome. Unknown indications are counted as "other" (bounded labels).
func (m *metrics) verified(source, indication string) {
	switch indication {
	case "TOTAL_PASSED", "TOTAL_FAILED", "INDETERMINATE":
	default:
		indication = "other"
	}
	m.verifications.WithLabelValues(source, indication).Inc()
}
