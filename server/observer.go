package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
)

// Observer is a repo.Observer that keeps Prometheus metrics: messages and
// payload bytes by message type, changes applied, rejected and persisted,
// persistence latency and batch size, fan-out latency, dropped and slowed
// peers.
// Give the same Observer to the Repo and to the Server, which then serves
// its metrics on /metrics:
//
//	obs := server.NewObserver()
//	r, err := repo.New(repo.Config{Store: store, Observer: obs})
//	...
//	srv, err := server.New(server.Config{Repo: r, Observer: obs})
//
// It is also a prometheus.Collector, for embedders that register it on a
// registry of their own. Its methods are safe for concurrent use and do not
// allocate.
type Observer struct {
	msgsIn, msgsOut, bytesIn, bytesOut *prometheus.CounterVec
	applied, rejected, dropped, slowed *prometheus.CounterVec
	persisted, persistedBytes          prometheus.Counter
	persistSeconds, persistBatch       prometheus.Histogram
	fanoutSeconds                      prometheus.Histogram

	// Children resolved once, so that the hot path needs no label lookup.
	byType        map[string]*typeCounters
	local, remote prometheus.Counter
}

type typeCounters struct{ msgsIn, msgsOut, bytesIn, bytesOut prometheus.Counter }

var messageTypes = []string{
	transport.TypeJoin, transport.TypePeer, transport.TypeError, transport.TypeRequest,
	transport.TypeSync, transport.TypeDocUnavailable, transport.TypeEphemeral,
	transport.TypeRemoteSubscriptionChange, transport.TypeRemoteHeadsChanged,
	transport.TypeLeave, repo.MessageTypeUnknown,
}

// NewObserver makes an Observer with all its metrics at zero.
func NewObserver() *Observer {
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tandem", Name: name, Help: help}, []string{label})
	}
	o := &Observer{
		msgsIn:   counterVec("messages_received_by_type_total", "Protocol messages received from peers, by message type.", "type"),
		msgsOut:  counterVec("messages_sent_by_type_total", "Protocol messages written to peers, by message type.", "type"),
		bytesIn:  counterVec("received_bytes_by_type_total", "Payload bytes (sync and ephemeral data) received from peers, by message type.", "type"),
		bytesOut: counterVec("sent_bytes_by_type_total", "Payload bytes (sync and ephemeral data) written to peers, by message type.", "type"),
		applied:  counterVec("changes_applied_total", "Changes applied and made durable, by origin: remote (from a peer) or local (Go API, REST).", "origin"),
		rejected: counterVec("changes_rejected_total", "Changes refused, by reason: validation, too_large, read_only, invalid_message (counted as 1 per message).", "reason"),
		dropped:  counterVec("peers_dropped_total", "Peers disconnected by the server, by reason: outbox_full and write_timeout (slow readers).", "reason"),
		slowed:   counterVec("peers_slowed_total", "Connections slowed for going over a rate limit (counted once per connection and limit), by limit: messages (--rate) or bytes (--rate-bytes).", "limit"),
		persisted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tandem", Name: "changes_persisted_total", Help: "Changes written durably to the store.",
		}),
		persistedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tandem", Name: "persisted_bytes_total", Help: "Bytes of changes written durably to the store.",
		}),
		persistSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tandem", Name: "persist_duration_seconds",
			Help:    "Time of one durable append of a document's batch of changes.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		persistBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tandem", Name: "persist_batch_changes",
			Help:    "Changes per durable append.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}),
		fanoutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tandem", Name: "fanout_latency_seconds",
			Help:    "Time from a peer needing a sync message for a document (its change persisted) until the message is written to the peer's connection.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		byType: make(map[string]*typeCounters, len(messageTypes)),
	}
	for _, t := range messageTypes {
		o.byType[t] = &typeCounters{
			msgsIn: o.msgsIn.WithLabelValues(t), msgsOut: o.msgsOut.WithLabelValues(t),
			bytesIn: o.bytesIn.WithLabelValues(t), bytesOut: o.bytesOut.WithLabelValues(t),
		}
	}
	o.local, o.remote = o.applied.WithLabelValues("local"), o.applied.WithLabelValues("remote")
	for _, r := range []string{repo.RejectValidation, repo.RejectTooLarge, repo.RejectReadOnly, repo.RejectInvalid} {
		o.rejected.WithLabelValues(r)
	}
	for _, r := range []string{repo.DropOutboxFull, repo.DropWriteTimeout} {
		o.dropped.WithLabelValues(r)
	}
	for _, l := range []string{repo.SlowMessages, SlowBytes} {
		o.slowed.WithLabelValues(l)
	}
	return o
}

func (o *Observer) counters(typ string) *typeCounters {
	if c := o.byType[typ]; c != nil {
		return c
	}
	return o.byType[repo.MessageTypeUnknown]
}

// MessageIn implements repo.Observer.
func (o *Observer) MessageIn(typ string, bytes int) {
	c := o.counters(typ)
	c.msgsIn.Inc()
	c.bytesIn.Add(float64(bytes))
}

// MessageOut implements repo.Observer.
func (o *Observer) MessageOut(typ string, bytes int) {
	c := o.counters(typ)
	c.msgsOut.Inc()
	c.bytesOut.Add(float64(bytes))
}

// ChangesApplied implements repo.Observer.
func (o *Observer) ChangesApplied(n int, remote bool) {
	if remote {
		o.remote.Add(float64(n))
	} else {
		o.local.Add(float64(n))
	}
}

// ChangesRejected implements repo.Observer.
func (o *Observer) ChangesRejected(n int, reason string) {
	o.rejected.WithLabelValues(reason).Add(float64(n))
}

// Persisted implements repo.Observer.
func (o *Observer) Persisted(changes, bytes int, d time.Duration) {
	o.persisted.Add(float64(changes))
	o.persistedBytes.Add(float64(bytes))
	o.persistSeconds.Observe(d.Seconds())
	o.persistBatch.Observe(float64(changes))
}

// FanoutLatency implements repo.Observer.
func (o *Observer) FanoutLatency(d time.Duration) { o.fanoutSeconds.Observe(d.Seconds()) }

// PeerDropped implements repo.Observer.
func (o *Observer) PeerDropped(reason string) { o.dropped.WithLabelValues(reason).Inc() }

// PeerSlowed implements repo.Observer; the server reports its byte limit
// (SlowBytes) here too.
func (o *Observer) PeerSlowed(limit string) { o.slowed.WithLabelValues(limit).Inc() }

func (o *Observer) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		o.msgsIn, o.msgsOut, o.bytesIn, o.bytesOut, o.applied, o.rejected, o.dropped, o.slowed,
		o.persisted, o.persistedBytes, o.persistSeconds, o.persistBatch, o.fanoutSeconds,
	}
}

// Describe implements prometheus.Collector.
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range o.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	for _, c := range o.collectors() {
		c.Collect(ch)
	}
}

var (
	_ repo.Observer        = (*Observer)(nil)
	_ prometheus.Collector = (*Observer)(nil)
)
