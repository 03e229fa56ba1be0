package rabbitmq

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Management is a client of the RabbitMQ management HTTP API, for the counts AMQP cannot give:
// unacknowledged messages and rates. The broker refreshes these figures every few seconds
// (collect_statistics_interval, 5 s by default), so they lag AMQP's.
type Management struct {
	base     string // scheme://host:port[/prefix], no credentials, no trailing slash
	shown    string
	user     string
	password string
	vhost    string
	client   *http.Client
}

// QueueStats are the management API's figures for one queue. Rates are messages per second.
type QueueStats struct {
	Name                              string
	Ready, Unacked, Consumers         int
	PublishRate, DeliverRate, AckRate float64
}

// NewManagement returns a client for the API at baseURL (http://host:15672). Credentials in
// baseURL are used when user is empty and are never shown. vhost defaults to "pero"; a nil client
// means one with a 10 s timeout.
func NewManagement(baseURL, user, password, vhost string, client *http.Client) *Management {
	m := &Management{
		user:     user,
		password: password,
		vhost:    cmp.Or(vhost, "pero"),
		client:   client,
	}
	if m.client == nil {
		m.client = &http.Client{Timeout: 10 * time.Second}
	}
	base := strings.TrimRight(baseURL, "/")
	if u, err := url.Parse(base); err == nil && u.User != nil {
		if m.user == "" {
			m.user = u.User.Username()
			m.password, _ = u.User.Password()
		}
		u.User = nil
		base = u.String()
	}
	m.base = base
	m.shown = MaskURL(base)
	return m
}

// String shows where the client points, without the password.
func (m *Management) String() string { return m.shown }

type apiRate struct {
	Rate float64 `json:"rate"`
}

type apiQueue struct {
	Name         string `json:"name"`
	Ready        int    `json:"messages_ready"`
	Unacked      int    `json:"messages_unacknowledged"`
	Consumers    int    `json:"consumers"`
	MessageStats struct {
		Publish    apiRate `json:"publish_details"`
		DeliverGet apiRate `json:"deliver_get_details"`
		Ack        apiRate `json:"ack_details"`
	} `json:"message_stats"`
}

func (q apiQueue) stats() QueueStats {
	return QueueStats{
		Name:        q.Name,
		Ready:       q.Ready,
		Unacked:     q.Unacked,
		Consumers:   q.Consumers,
		PublishRate: q.MessageStats.Publish.Rate,
		DeliverRate: q.MessageStats.DeliverGet.Rate,
		AckRate:     q.MessageStats.Ack.Rate,
	}
}

// queueColumns keeps the listing small on brokers with many queues.
const queueColumns = "name,messages_ready,messages_unacknowledged,consumers," +
	"message_stats.publish_details.rate,message_stats.deliver_get_details.rate,message_stats.ack_details.rate"

// QueueStats returns the figures of one queue: ErrQueueNotFound when it does not exist, ErrAuth
// when the API refuses the credentials.
func (m *Management) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	if queue == "" {
		return QueueStats{}, fmt.Errorf("queue stats: %w", errNoQueueName)
	}
	var q apiQueue
	path := "/api/queues/" + url.PathEscape(m.vhost) + "/" + url.PathEscape(queue)
	if err := m.get(ctx, path, &q); err != nil {
		return QueueStats{}, fmt.Errorf("queue stats of %q: %w", queue, err)
	}
	return q.stats(), nil
}

// ListQueues returns the figures of every queue in the vhost.
func (m *Management) ListQueues(ctx context.Context) ([]QueueStats, error) {
	var qs []apiQueue
	path := "/api/queues/" + url.PathEscape(m.vhost) + "?columns=" + url.QueryEscape(queueColumns)
	if err := m.get(ctx, path, &qs); err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	out := make([]QueueStats, len(qs))
	for i, q := range qs {
		out[i] = q.stats()
	}
	return out, nil
}

func (m *Management) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return fmt.Errorf("management API %s: %w", m.shown, redact(err, m.password))
	}
	req.SetBasicAuth(m.user, m.password)
	req.Header.Set("Accept", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("management API %s: %w", m.shown, redact(err, m.password))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
			return fmt.Errorf("management API %s: decode: %w", m.shown, err)
		}
		return nil
	case http.StatusUnauthorized:
		return fmt.Errorf("management API %s as %q: %w (401)", m.shown, m.user, ErrAuth)
	case http.StatusNotFound:
		return fmt.Errorf("management API %s: %w (404)", m.shown, ErrQueueNotFound)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("management API %s: %s: %s", m.shown, resp.Status, strings.TrimSpace(string(body)))
}
