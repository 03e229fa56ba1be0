package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"text/tabwriter"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

var serverKinds = []struct {
	name string
	kind zookeeper.ServerKind
	desc string
}{
	{"mq", zookeeper.MQServers, "RabbitMQ brokers (AMQP port, usually 5672)"},
	{"mq-monitoring", zookeeper.MQMonitoringServers, "RabbitMQ management API (usually 15672)"},
	{"ftp", zookeeper.FTPServers, "FTP servers holding the model archives (usually 21)"},
}

func kindByName(name string) (zookeeper.ServerKind, error) {
	for _, k := range serverKinds {
		if k.name == name {
			return k.kind, nil
		}
	}
	return "", usageErr("unknown server kind %q: use mq, mq-monitoring or ftp", name)
}

func serversCommand() *Command {
	return &Command{
		Name:    "servers",
		Summary: "Register, list and remove RabbitMQ, monitoring and FTP servers",
		Run:     runServers,
	}
}

const serversHelp = `Manage the server lists in ZooKeeper that every component reads
(/pero/worker/config/{mq_servers,mq_monitoring_servers,ftp_servers}).

Subcommands:
  add KIND HOST:PORT...      register servers (idempotent)
  remove KIND HOST:PORT...   unregister servers
  list [KIND]                show the registered servers

KIND is mq (RabbitMQ AMQP), mq-monitoring (RabbitMQ management API) or ftp.

Example:
  pero servers add mq 127.0.0.1:5672
  pero servers add mq-monitoring 127.0.0.1:15672
  pero servers add ftp 127.0.0.1:2121`

func runServers(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "servers", "servers add|remove|list [KIND] [HOST:PORT...] [flags]", serversHelp)
	cf := addConnFlags(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageErr("missing subcommand: add, remove or list")
	}
	sub, rest := rest[0], rest[1:]
	switch sub {
	case "add", "remove":
		if len(rest) < 2 {
			return usageErr("usage: pero servers %s KIND HOST:PORT...", sub)
		}
		kind, err := kindByName(rest[0])
		if err != nil {
			return err
		}
		for _, hp := range rest[1:] {
			if err := checkHostPort(hp); err != nil {
				return err
			}
		}
		st, err := cf.openZK(ctx, env)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, hp := range rest[1:] {
			if sub == "add" {
				err = st.AddServer(ctx, kind, hp)
			} else {
				err = st.RemoveServer(ctx, kind, hp)
				if errors.Is(err, zookeeper.ErrNotFound) {
					return failed(fmt.Errorf("%s server %s is not registered", rest[0], hp), "see `pero servers list`")
				}
			}
			if err != nil {
				return err
			}
			verb := "added"
			if sub == "remove" {
				verb = "removed"
			}
			fmt.Fprintf(env.Stdout, "%s %s server %s\n", verb, rest[0], hp)
		}
		return nil
	case "list":
		kinds := serverKinds
		if len(rest) > 0 {
			if _, err := kindByName(rest[0]); err != nil {
				return err
			}
		}
		st, err := cf.openZK(ctx, env)
		if err != nil {
			return err
		}
		defer st.Close()
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tSERVER")
		for _, k := range kinds {
			if len(rest) > 0 && k.name != rest[0] {
				continue
			}
			list, err := st.Servers(ctx, k.kind)
			if err != nil && !errors.Is(err, zookeeper.ErrNoServers) {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintf(tw, "%s\t(none)\n", k.name)
			}
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\n", k.name, s)
			}
		}
		return tw.Flush()
	default:
		return usageErr("unknown subcommand %q: use add, remove or list", sub)
	}
}

func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		return usageErr("%q is not HOST:PORT", hp)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return usageErr("%q: port must be 1-65535", hp)
	}
	return nil
}
