package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthzURL(t *testing.T) {
	tests := []struct {
		addr, want string
		err        bool
	}{
		{addr: ":9464", want: "http://127.0.0.1:9464/healthz"},
		{addr: "0.0.0.0:9464", want: "http://127.0.0.1:9464/healthz"},
		{addr: "[::]:9464", want: "http://127.0.0.1:9464/healthz"},
		{addr: "127.0.0.2:19464", want: "http://127.0.0.2:19464/healthz"},
		{addr: "watchdog:9464", want: "http://watchdog:9464/healthz"},
		{addr: "", err: true},
		{addr: "9464", err: true},
	}
	for _, tt := range tests {
		got, err := healthzURL(tt.addr)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("healthzURL(%q) = %q, %v; want %q, error %v", tt.addr, got, err, tt.want, tt.err)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// A port nothing listens on: a listener opened and closed at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name   string
		status int
		args   []string
		env    []string
		want   int
	}{
		{name: "ok from env", status: http.StatusOK, env: []string{"PERO_METRICS_ADDR=" + addr}, want: 0},
		{name: "ok from flag", status: http.StatusOK, args: []string{"--metrics-addr", addr}, want: 0},
		{name: "stopping", status: http.StatusServiceUnavailable, env: []string{"PERO_METRICS_ADDR=" + addr}, want: 1},
		{name: "nobody listens", env: []string{"PERO_METRICS_ADDR=" + closed}, want: 1},
		{name: "no metrics server", env: []string{"PERO_METRICS_ADDR="}, want: exitUsage},
		{name: "bad flag", args: []string{"--nope"}, want: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status = tt.status
			var out, errOut bytes.Buffer
			if got := run(append([]string{"healthcheck"}, tt.args...), tt.env, &out, &errOut); got != tt.want {
				t.Errorf("exit %d, want %d (stderr %q)", got, tt.want, errOut.String())
			}
		})
	}
}
