package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

const healthcheckUsage = `Usage: pero-watchdog healthcheck [--metrics-addr ADDR] [--timeout DUR]

Asks the watchdog running in this container (or on this host) for its /healthz and exits 0 when
it answers 200, 1 otherwise. It is the health check of the watchdog image, which has no shell
and no HTTP client. The address is the watchdog's --metrics-addr (env PERO_METRICS_ADDR); an
address without a host, or with a wildcard host, is asked on the loopback interface.

Flags:
`

// healthcheck runs `pero-watchdog healthcheck`: exit 0 when /healthz answers 200, 1 when it
// answers otherwise or not at all, 2 for bad flags.
func healthcheck(args, env []string, stdout, stderr io.Writer) int {
	addr := ":9464"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PERO_METRICS_ADDR="); ok {
			addr = v
		}
	}
	fs := pflag.NewFlagSet("pero-watchdog healthcheck", pflag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.StringVar(&addr, "metrics-addr", addr, "address the watchdog serves /healthz on (env PERO_METRICS_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, healthcheckUsage+fs.FlagUsages())
			return exitOK
		}
		fmt.Fprintf(stderr, "pero-watchdog healthcheck: %v\n", err)
		return exitUsage
	}
	url, err := healthzURL(addr)
	if err != nil {
		fmt.Fprintf(stderr, "pero-watchdog healthcheck: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "pero-watchdog healthcheck: %v\n", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pero-watchdog healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s", body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pero-watchdog healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	return exitOK
}

// healthzURL turns a listen address into the URL to ask: a missing or wildcard host becomes the
// loopback address.
func healthzURL(addr string) (string, error) {
	if addr == "" {
		return "", fmt.Errorf("no metrics address: the watchdog serves /healthz only with --metrics-addr (env PERO_METRICS_ADDR)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--metrics-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
