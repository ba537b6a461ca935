// Command sharder runs the sharder of timebertt/kubernetes-controller-sharding (pinned in go.mod)
// on kumo's test bed: its ControllerRing, shard-lease and sharder controllers and its assigning
// webhook, unchanged, in one process outside the cluster.
//
// It exists because upstream's cmd/sharder serves its webhook on controller-runtime's default
// ":9443" (every interface, one fixed port) with no setting to move it: every server of the test
// bed binds loopback only, and beds started side by side need a port each. The process wiring is
// therefore kumo's own; the behaviour is upstream's, configured through its SharderConfig type
// with its defaults (a sync every 5 minutes, failurePolicy Ignore). Out of a cluster there is no
// Service to point the MutatingWebhookConfiguration at, so it names the webhook by URL with the
// bed's CA as caBundle (SharderConfig webhook.config.clientConfig, which upstream documents as
// defaulting to the sharder Service). One sharder per bed: no leader election.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	configv1alpha1 "github.com/timebertt/kubernetes-controller-sharding/pkg/apis/config/v1alpha1"
	shardingv1alpha1 "github.com/timebertt/kubernetes-controller-sharding/pkg/apis/sharding/v1alpha1"
	"github.com/timebertt/kubernetes-controller-sharding/pkg/controller"
	utilclient "github.com/timebertt/kubernetes-controller-sharding/pkg/utils/client"
	healthzutils "github.com/timebertt/kubernetes-controller-sharding/pkg/utils/healthz"
	sharderwebhook "github.com/timebertt/kubernetes-controller-sharding/pkg/webhook"
)

type options struct {
	webhookAddress string // host:port the webhook server listens on
	webhookURL     string // what the MutatingWebhookConfigurations call (the ring's path is appended)
	caFile         string // PEM CA that signed the serving certificate: the webhooks' caBundle
	certDir        string // holds tls.crt and tls.key, the webhook's serving certificate
	metricsAddress string
	healthAddress  string
	syncPeriod     time.Duration
}

func main() {
	opts := options{}
	flag.StringVar(&opts.webhookAddress, "webhook-bind-address", "127.0.0.1:9443", "host:port of the webhook server (TLS)")
	flag.StringVar(&opts.webhookURL, "webhook-url", "", "URL the API server calls the webhook at (default https://<webhook-bind-address>)")
	flag.StringVar(&opts.caFile, "webhook-ca-file", "", "PEM file of the CA that signed the webhook's certificate (required)")
	flag.StringVar(&opts.certDir, "cert-dir", "", "directory holding tls.crt and tls.key for the webhook server (required)")
	flag.StringVar(&opts.metricsAddress, "metrics-bind-address", "127.0.0.1:8080", "where Prometheus metrics are served (plain HTTP); 0 disables")
	flag.StringVar(&opts.healthAddress, "health-probe-bind-address", "127.0.0.1:8081", "where /healthz and /readyz are served")
	flag.DurationVar(&opts.syncPeriod, "sync-period", 5*time.Minute, "how often every object assignment of a ring is checked")
	zapOptions := zap.Options{}
	zapOptions.BindFlags(flag.CommandLine)
	flag.Parse()

	logger := zap.New(zap.UseFlagOptions(&zapOptions))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "sharder:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts options) error {
	config, err := sharderConfig(opts)
	if err != nil {
		return err
	}
	webhookHost, webhookPort, err := splitHostPort(opts.webhookAddress)
	if err != nil {
		return fmt.Errorf("--webhook-bind-address: %w", err)
	}
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("API server config: %w", err)
	}
	// As upstream's defaulting: the sharder moves many objects at once when a shard leaves.
	restConfig.QPS = config.ClientConnection.QPS
	restConfig.Burst = int(config.ClientConnection.Burst)

	manager, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 utilclient.SharderScheme,
		Cache:                  cacheOptions(),
		HealthProbeBindAddress: opts.healthAddress,
		Metrics:                metricsserver.Options{BindAddress: opts.metricsAddress},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    webhookHost,
			Port:    webhookPort,
			CertDir: opts.certDir,
		}),
		GracefulShutdownTimeout: &config.GracefulShutdownTimeout.Duration,
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := manager.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the ControllerRing and Lease caches are filled: before that the webhook would
	// find no shard and let objects through unassigned.
	if err := manager.AddReadyzCheck("cache-sync", healthzutils.CacheSync(manager.GetCache())); err != nil {
		return err
	}
	if err := controller.AddToManager(ctx, manager, config); err != nil {
		return fmt.Errorf("controllers: %w", err)
	}
	if err := sharderwebhook.AddToManager(ctx, manager, config); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return manager.Start(ctx)
}

// sharderConfig is upstream's SharderConfig with upstream's defaults, pointing the webhook
// configurations at this process by URL.
func sharderConfig(opts options) (*configv1alpha1.SharderConfig, error) {
	if opts.caFile == "" || opts.certDir == "" {
		return nil, fmt.Errorf("--webhook-ca-file and --cert-dir are required")
	}
	caBundle, err := os.ReadFile(opts.caFile)
	if err != nil {
		return nil, fmt.Errorf("--webhook-ca-file: %w", err)
	}
	webhookURL := opts.webhookURL
	if webhookURL == "" {
		webhookURL = "https://" + opts.webhookAddress
	}
	if parsed, err := url.Parse(webhookURL); err != nil || parsed.Scheme != "https" {
		return nil, fmt.Errorf("--webhook-url must be an https URL, got %q", webhookURL)
	}
	config := &configv1alpha1.SharderConfig{
		Controller: configv1alpha1.Controller{
			Sharder: &configv1alpha1.SharderController{SyncPeriod: &metav1.Duration{Duration: opts.syncPeriod}},
		},
	}
	config.Webhook.Config = &configv1alpha1.WebhookConfig{
		ClientConfig: &admissionregistrationv1.WebhookClientConfig{URL: &webhookURL, CABundle: caBundle},
	}
	utilclient.SharderScheme.Default(config)
	return config, nil
}

// cacheOptions watches only the Leases that belong to some ring (every Lease of the cluster
// otherwise: leader elections, node heartbeats) and keeps no managedFields in memory.
func cacheOptions() cache.Options {
	inRing, err := labels.NewRequirement(shardingv1alpha1.LabelControllerRing, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key and operator: cannot fail
	}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Label: labels.NewSelector().Add(*inRing)},
		},
	}
}

func splitHostPort(address string) (string, int, error) {
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 {
		return "", 0, fmt.Errorf("invalid port in %q", address)
	}
	return host, port, nil
}
