// Command pero-watchdog watches the stages' queue backlogs and runs their function containers on
// this host's Docker engine or on a Docker Swarm; see package watchdog. Exit codes: 0 after a
// stop signal, 2 for bad flags or variables, 3 when a service cannot be reached.
// `pero-watchdog healthcheck` asks a running watchdog's /healthz (the image's health check).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/pero-worker/pero-worker/internal/backoff"
	"github.com/pero-worker/pero-worker/internal/creds"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/version"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/watchdog"
	"github.com/pero-worker/pero-worker/watchdog/docker"
	"github.com/pero-worker/pero-worker/watchdog/status"
	"github.com/pero-worker/pero-worker/watchdog/swarm"
)

const (
	exitOK          = 0
	exitUsage       = 2
	exitUnavailable = 3
)

func main() { os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) }

func run(args, env []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], env, stdout, stderr)
	}
	o, err := parse(args, env)
	var help *helpError
	if errors.As(err, &help) {
		fmt.Fprint(stdout, help.usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "pero-watchdog: %v\nrun pero-watchdog --help for the flags\n", err)
		return exitUsage
	}
	getenv := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if key, v, ok := strings.Cut(env[i], "="); ok && key == k {
				return v
			}
		}
		return ""
	}
	base := newLogger(o, stderr)
	if o.id == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.id = strings.Trim(host+"-"+hex.EncodeToString(b[:]), "-")
	}
	switch o.cpuSlots {
	case 0:
		o.cpuSlots = runtime.NumCPU()
	case -1:
		o.cpuSlots = 0
	}
	log := base.With("component", "main", "watchdog", o.id)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, o, getenv, base); err != nil {
		log.Error("pero-watchdog", "err", err)
		var u unavailableError
		if errors.As(err, &u) {
			return exitUnavailable
		}
		return exitUsage
	}
	return exitOK
}

type unavailableError struct{ error }

func (u unavailableError) Unwrap() error { return u.error }

func newLogger(o options, w io.Writer) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: o.logLevel}
	var h slog.Handler = slog.NewJSONHandler(w, hopts)
	if o.logFormat == "text" {
		h = slog.NewTextHandler(w, hopts)
	}
	return slog.New(h)
}

// serve connects to the services, runs the watchdog until ctx ends, then shuts down: it stops
// launching, fails its health check, and leaves the running containers to finish.
func serve(ctx context.Context, o options, getenv func(string) string, base *slog.Logger) error {
	// Each component adds its own component attribute (and the watchdog's id where it has it).
	log := base.With("component", "main", "watchdog", o.id)
	mq, err := creds.FromEnv(getenv, "PERO_MQ", "guest", "guest")
	if err != nil {
		return err
	}
	ftp, err := creds.FromEnv(getenv, "PERO_FTP", "pero", "")
	if err != nil {
		return err
	}
	zkAuth := getenv("PERO_ZK_AUTH")
	if getenv("PERO_ZK_AUTH_FILE") != "" {
		a, err := creds.FromEnv(getenv, "PERO_ZK_AUTH", "", "")
		if err != nil {
			return err
		}
		zkAuth = a.Password
	}
	mqTLS, err := creds.TLSFromEnv(getenv, "PERO_MQ")
	if err != nil {
		return err
	}
	monTLS, err := creds.TLSFromEnv(getenv, "PERO_MQ_MONITORING")
	if err != nil {
		return err
	}

	log.Info("starting", "version", version.Version, "backend", o.backend, "zookeeper", o.zookeeper, "root", o.zkRoot,
		"scope", o.scope, "cpu_slots", o.cpuSlots, "gpus", o.gpus)
	store, err := zookeeper.Dial(ctx, zookeeper.Config{
		Servers: o.zookeeper, Root: o.zkRoot, SessionTimeout: o.sessionTimeout, ConnectTimeout: o.connectTimeout,
		Auth: zkAuth, Logger: base.With("component", "zookeeper"),
	})
	if err != nil {
		return unavailableError{fmt.Errorf("connect to ZooKeeper: %w", err)}
	}
	defer store.Close() // last: closing the session hands leadership over at once

	// The broker's address comes from ZooKeeper, where `pero servers add mq` registers it; wait
	// for it rather than fail when the watchdog starts first.
	var addrs []string
	for attempt := 0; ; attempt++ {
		addrs, err = store.Servers(ctx, zookeeper.MQServers)
		if err == nil {
			break
		}
		if attempt == 0 || attempt%30 == 0 {
			log.Warn("no broker registered yet; waiting (pero servers add mq HOST:5672)", "err", err)
		}
		if backoff.Sleep(ctx, backoff.Delay(attempt, 500*time.Millisecond, 10*time.Second, nil)) != nil {
			return nil
		}
	}
	session, err := rabbitmq.DialWithRecovery(ctx, rabbitmq.Config{
		Addrs: addrs, User: mq.User, Password: mq.Password, VHost: o.vhost, TLS: mqTLS,
		ConnectTimeout: o.connectTimeout, ConnectionName: "pero-watchdog " + o.id, Logger: base.With("component", "rabbitmq"),
	})
	if err != nil {
		return unavailableError{fmt.Errorf("connect to RabbitMQ: %w", err)}
	}
	defer session.Close()
	var mgmt *rabbitmq.Management
	if mons, err := store.Servers(ctx, zookeeper.MQMonitoringServers); err == nil {
		scheme := "http"
		if monTLS != nil {
			scheme = "https"
		}
		mgmt = rabbitmq.NewManagement(scheme+"://"+mons[0], mq.User, mq.Password, o.vhost, nil)
	} else {
		log.Info("no monitoring server registered: unacknowledged counts come from the runners' status")
	}

	backend, closeBackend, err := newBackend(o, base.With("watchdog", o.id))
	if errors.Is(err, docker.ErrUnreachable) || errors.Is(err, swarm.ErrUnreachable) {
		return unavailableError{err}
	}
	if err != nil {
		return err
	}
	defer closeBackend()

	env, mounts := runnerEnv(o, credentials{mqUser: mq.User, mqPassword: mq.Password, ftpUser: ftp.User,
		ftpPassword: ftp.Password, zkAuth: zkAuth}, getenv)
	elector, err := watchdog.NewElector(watchdog.ElectorConfig{
		Conn: store.Conn(), ACL: store.ACL(), Root: store.Root(), ID: o.id,
		SessionEvents: store.SessionEvents(), Logger: base,
	})
	if err != nil {
		return err
	}
	w, err := watchdog.New(watchdog.Config{
		ID:            o.id,
		Backend:       o.backend,
		PollInterval:  o.poll,
		Policy:        watchdog.Policy{TargetDrain: o.targetDrain, AgingInterval: o.aging},
		Backoff:       watchdog.BackoffPolicy{QuickExit: o.quickExit, Base: o.backoffBase, Max: o.backoffMax},
		CPUSlots:      o.cpuSlots,
		GPUs:          o.gpus,
		GPUShare:      o.gpuShare,
		DefaultImage:  o.defaultImage,
		AllowedImages: o.allowedImages,
		Runner: watchdog.RunnerConfig{
			Env: env, Mounts: mounts, Network: o.network, CacheVolume: o.cacheVolume, CacheDir: o.cacheDir,
			PidsLimit: o.pidsLimit, StopTimeout: o.stopTimeout,
		},
		Logger: base,
	}, watchdog.Deps{
		Backend: backend,
		Stages:  store,
		Queues:  &watchdog.BrokerQueues{Session: session, Management: mgmt},
		Runners: &watchdog.ZKRunners{Conn: store.Conn(), Root: store.Root()},
		Status:  &watchdog.ZKStatus{Conn: store.Conn(), ACL: store.ACL(), Path: status.Path(store.Root())},
		Elector: elector,
	})
	if err != nil {
		return err
	}

	var srv *http.Server
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", o.metricsAddr, err)
		}
		srv = &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	}
	if err := w.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("stop signal: no more launches; running containers finish on their own")
	w.Stop()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	log.Info("stopped")
	return nil
}

// newBackend makes the backend o names.
func newBackend(o options, log *slog.Logger) (watchdog.Backend, func(), error) {
	switch o.backend {
	case "swarm":
		b, err := swarm.New(swarm.Config{Scope: o.scope, GPUResource: o.swarmGPUKind, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return b, func() { _ = b.Close() }, nil
	default:
		b, err := docker.New(docker.Config{Scope: o.scope, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return b, func() { _ = b.Close() }, nil
	}
}
