package zookeeper

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestServers(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)

	_, err := s.Servers(ctx, MQServers)
	if !errors.Is(err, ErrNoServers) {
		t.Fatalf("Servers of a missing list: %v, want ErrNoServers", err)
	}
	for _, want := range []string{"mq_servers", s.Root() + "/worker/config/mq_servers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	for _, hp := range []string{"mq2:5672", "mq1:5672", "[::1]:5672", "mq1:5672"} { // the repeat is a no-op
		if err := s.AddServer(ctx, MQServers, hp); err != nil {
			t.Fatalf("AddServer(%s): %v", hp, err)
		}
	}
	if err := s.AddServer(ctx, FTPServers, "ftp:2121"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Servers(ctx, MQServers)
	if want := []string{"[::1]:5672", "mq1:5672", "mq2:5672"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Servers(mq) = %v, %v; want %v", got, err, want)
	}
	if got, err := s.Servers(ctx, FTPServers); err != nil || !slices.Equal(got, []string{"ftp:2121"}) {
		t.Errorf("Servers(ftp) = %v, %v", got, err)
	}
	// The original's layout: one child per server.
	if ok, _, err := s.Conn().Exists(s.Root() + "/worker/config/mq_servers/mq1:5672"); err != nil || !ok {
		t.Errorf("server node missing: %v %v", ok, err)
	}

	if err := s.RemoveServer(ctx, MQServers, "mq1:5672"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveServer(ctx, MQServers, "mq1:5672"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveServer: %v, want ErrNotFound", err)
	}
	if err := s.RemoveServer(ctx, MQMonitoringServers, "mq1:15672"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveServer from a missing list: %v, want ErrNotFound", err)
	}
	for _, hp := range []string{"mq2:5672", "[::1]:5672"} {
		if err := s.RemoveServer(ctx, MQServers, hp); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Servers(ctx, MQServers); !errors.Is(err, ErrNoServers) {
		t.Errorf("Servers of an empty list: %v, want ErrNoServers", err)
	}
}

func TestServersInvalid(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	for _, hp := range []string{"", "mq", "mq:", ":5672", "mq:0", "mq:65536", "mq:http", "a/b:1", "::1:5672"} {
		if err := s.AddServer(ctx, MQServers, hp); err == nil {
			t.Errorf("AddServer(%q) succeeded", hp)
		}
	}
	if err := s.AddServer(ctx, ServerKind("db_servers"), "db:1"); err == nil || !strings.Contains(err.Error(), "db_servers") {
		t.Errorf("AddServer with an unknown kind: %v", err)
	}
	if _, err := s.Servers(ctx, ServerKind("../x")); err == nil {
		t.Error("Servers with an unknown kind succeeded")
	}
}
