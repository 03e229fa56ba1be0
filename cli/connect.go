package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/pero-worker/pero-worker/internal/creds"
	"github.com/pero-worker/pero-worker/internal/ftpstore"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// connFlags are the connection flags every service-using subcommand shares.
type connFlags struct {
	zookeeper string
	root      string
	vhost     string
	timeout   time.Duration
}

func addConnFlags(fs *pflag.FlagSet, env *Env) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.zookeeper, "zookeeper", cmp.Or(env.Getenv("PERO_ZOOKEEPER"), "127.0.0.1:2181"),
		"ZooKeeper servers, comma separated (env PERO_ZOOKEEPER)")
	fs.StringVar(&c.root, "zk-root", cmp.Or(env.Getenv("PERO_ZK_ROOT"), "/pero"),
		"root znode of the configuration (env PERO_ZK_ROOT)")
	fs.StringVar(&c.vhost, "vhost", cmp.Or(env.Getenv("PERO_MQ_VHOST"), "pero"),
		"RabbitMQ virtual host (env PERO_MQ_VHOST)")
	fs.DurationVar(&c.timeout, "connect-timeout", 10*time.Second, "give up connecting to a service after this long")
	return c
}

func (c *connFlags) servers() []string {
	var out []string
	for _, s := range strings.Split(c.zookeeper, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// openZK connects to ZooKeeper; failures are exit code 3 with a hint.
func (c *connFlags) openZK(ctx context.Context, env *Env) (*zookeeper.Store, error) {
	if len(c.servers()) == 0 {
		return nil, usageErr("--zookeeper: no servers given")
	}
	auth := env.Getenv("PERO_ZK_AUTH")
	if f := env.Getenv("PERO_ZK_AUTH_FILE"); f != "" {
		if auth != "" {
			return nil, usageErr("PERO_ZK_AUTH and PERO_ZK_AUTH_FILE are both set: use one")
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErr("PERO_ZK_AUTH_FILE: %v", err)
		}
		auth = strings.TrimRight(string(b), "\r\n")
	}
	tlsCfg, err := creds.TLSFromEnv(env.Getenv, "PERO_ZK")
	if err != nil {
		return nil, usageErr("%v", err)
	}
	st, err := zookeeper.Dial(ctx, zookeeper.Config{
		Servers:        c.servers(),
		Root:           c.root,
		ConnectTimeout: c.timeout,
		Auth:           auth,
		TLS:            tlsCfg,
		Logger:         env.Logger,
	})
	if err != nil {
		return nil, unavailable(fmt.Errorf("connect to ZooKeeper %s: %w", c.zookeeper, err),
			"check --zookeeper (or PERO_ZOOKEEPER); for a local setup run `make services`")
	}
	return st, nil
}

// mqConfig builds the RabbitMQ configuration from the servers registered in ZooKeeper
// and the credentials in the environment.
func (c *connFlags) mqConfig(ctx context.Context, env *Env, st *zookeeper.Store) (rabbitmq.Config, error) {
	addrs, err := st.Servers(ctx, zookeeper.MQServers)
	if err != nil {
		if errors.Is(err, zookeeper.ErrNoServers) {
			return rabbitmq.Config{}, failed(err, "register the broker first: pero servers add mq HOST:5672")
		}
		return rabbitmq.Config{}, unavailable(err, "")
	}
	cr, err := creds.FromEnv(env.Getenv, "PERO_MQ", "guest", "guest")
	if err != nil {
		return rabbitmq.Config{}, usageErr("%v", err)
	}
	tlsCfg, err := creds.TLSFromEnv(env.Getenv, "PERO_MQ")
	if err != nil {
		return rabbitmq.Config{}, usageErr("%v", err)
	}
	return rabbitmq.Config{
		Addrs: addrs, User: cr.User, Password: cr.Password, VHost: c.vhost, TLS: tlsCfg,
		ConnectTimeout: c.timeout, Logger: env.Logger,
	}, nil
}

// openMQ connects to the first reachable broker registered in ZooKeeper.
func (c *connFlags) openMQ(ctx context.Context, env *Env, st *zookeeper.Store) (*rabbitmq.Conn, error) {
	cfg, err := c.mqConfig(ctx, env, st)
	if err != nil {
		return nil, err
	}
	conn, err := rabbitmq.Dial(ctx, cfg)
	if err != nil {
		hint := "check that RabbitMQ runs at " + strings.Join(cfg.Addrs, ", ")
		if errors.Is(err, rabbitmq.ErrAuth) {
			hint = "check PERO_MQ_USER and PERO_MQ_PASSWORD (or PERO_MQ_PASSWORD_FILE) and the vhost " + c.vhost
		}
		return nil, unavailable(fmt.Errorf("connect to RabbitMQ: %w", err), hint)
	}
	return conn, nil
}

// openFTP returns a store for the first FTP server registered in ZooKeeper.
func (c *connFlags) openFTP(ctx context.Context, env *Env, st *zookeeper.Store) (*ftpstore.Store, error) {
	addrs, err := st.Servers(ctx, zookeeper.FTPServers)
	if err != nil {
		if errors.Is(err, zookeeper.ErrNoServers) {
			return nil, failed(err, "register the file server first: pero servers add ftp HOST:PORT")
		}
		return nil, unavailable(err, "")
	}
	cr, err := creds.FromEnv(env.Getenv, "PERO_FTP", "pero", "")
	if err != nil {
		return nil, usageErr("%v", err)
	}
	tlsCfg, err := creds.TLSFromEnv(env.Getenv, "PERO_FTP")
	if err != nil {
		return nil, usageErr("%v", err)
	}
	if tlsCfg != nil && tlsCfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addrs[0])
		tlsCfg.ServerName = host
	}
	fs, err := ftpstore.New(ftpstore.Config{
		Addr: addrs[0], User: cr.User, Password: cr.Password, TLS: tlsCfg, Timeout: 30 * time.Second, Logger: env.Logger,
	})
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return fs, nil
}

// openManagement returns a management API client for the first monitoring server, or nil
// when none is registered.
func (c *connFlags) openManagement(ctx context.Context, env *Env, st *zookeeper.Store) (*rabbitmq.Management, error) {
	addrs, err := st.Servers(ctx, zookeeper.MQMonitoringServers)
	if err != nil {
		if errors.Is(err, zookeeper.ErrNoServers) {
			return nil, nil
		}
		return nil, unavailable(err, "")
	}
	cr, err := creds.FromEnv(env.Getenv, "PERO_MQ", "guest", "guest")
	if err != nil {
		return nil, usageErr("%v", err)
	}
	scheme := "http"
	if t, _ := creds.TLSFromEnv(env.Getenv, "PERO_MQ_MONITORING"); t != nil {
		scheme = "https"
	}
	return rabbitmq.NewManagement(scheme+"://"+addrs[0], cr.User, cr.Password, c.vhost, nil), nil
}
