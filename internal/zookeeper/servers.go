package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/go-zookeeper/zk"
)

// ServerKind names one of the server lists under <root>/worker/config.
type ServerKind string

// The server lists of the original, one child node per server named host:port.
const (
	MQServers           ServerKind = "mq_servers"            // RabbitMQ AMQP listeners
	MQMonitoringServers ServerKind = "mq_monitoring_servers" // RabbitMQ management API
	FTPServers          ServerKind = "ftp_servers"           // FTP servers holding model archives
)

func (k ServerKind) validate() error {
	switch k {
	case MQServers, MQMonitoringServers, FTPServers:
		return nil
	}
	return fmt.Errorf("unknown server kind %q (want %s, %s or %s)", string(k), MQServers, MQMonitoringServers, FTPServers)
}

func (s *Store) serversPath(kind ServerKind) string {
	return s.root + "/worker/config/" + string(kind)
}

// AddServer adds hostport to the list of kind. Adding a server already listed is not an error.
func (s *Store) AddServer(ctx context.Context, kind ServerKind, hostport string) error {
	if err := kind.validate(); err != nil {
		return fmt.Errorf("add server: %w", err)
	}
	if err := validateHostPort(hostport); err != nil {
		return fmt.Errorf("add %s server: %w", kind, err)
	}
	dir := s.serversPath(kind)
	if err := s.ensurePath(ctx, dir); err != nil {
		return fmt.Errorf("add %s server %s: %w", kind, hostport, err)
	}
	err := s.create(ctx, dir+"/"+hostport, nil)
	if err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("add %s server %s: %w", kind, hostport, err)
	}
	return nil
}

// RemoveServer removes hostport from the list of kind; ErrNotFound when it is not listed.
func (s *Store) RemoveServer(ctx context.Context, kind ServerKind, hostport string) error {
	if err := kind.validate(); err != nil {
		return fmt.Errorf("remove server: %w", err)
	}
	if err := validateHostPort(hostport); err != nil {
		return fmt.Errorf("remove %s server: %w", kind, err)
	}
	err := s.delete(ctx, s.serversPath(kind)+"/"+hostport, -1)
	if errors.Is(err, zk.ErrNoNode) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("remove %s server %s: %w", kind, hostport, err)
	}
	return nil
}

// Servers returns the host:port list of kind, sorted. It fails with ErrNoServers when the list is
// empty or was never created.
func (s *Store) Servers(ctx context.Context, kind ServerKind) ([]string, error) {
	if err := kind.validate(); err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	dir := s.serversPath(kind)
	list, err := s.children(ctx, dir)
	if errors.Is(err, zk.ErrNoNode) || err == nil && len(list) == 0 {
		return nil, fmt.Errorf("list %s at %s: %w", kind, dir, ErrNoServers)
	}
	if err != nil {
		return nil, fmt.Errorf("list %s at %s: %w", kind, dir, err)
	}
	slices.Sort(list)
	return list, nil
}

// validateHostPort accepts host:port with a non-empty host and a port in 1..65535; an IPv6 host
// is bracketed ([::1]:2181).
func validateHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", hp, err)
	}
	if host == "" {
		return fmt.Errorf("%q: host must not be empty", hp)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port must be a number in 1..65535", hp)
	}
	if err := validateName(hp); err != nil {
		return err
	}
	return nil
}
