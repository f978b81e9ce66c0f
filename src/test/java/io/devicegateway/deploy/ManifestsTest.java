package io.devicegateway.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.Reader;
import java.lang.reflect.Method;
import java.lang.reflect.ParameterizedType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.devicegateway.platform.mqtt.MqttConfig;
import io.quarkus.runtime.configuration.DurationConverter;
import io.quarkus.runtime.configuration.PathConverter;
import io.quarkus.tls.runtime.config.KeyStoreConfig;
import io.quarkus.tls.runtime.config.PemCertsConfig;
import io.quarkus.tls.runtime.config.PemKeyCertConfig;
import io.quarkus.tls.runtime.config.TlsBucketConfig;
import io.quarkus.tls.runtime.config.TlsConfig;
import io.quarkus.tls.runtime.config.TrustStoreConfig;
import io.smallrye.config.ConfigMapping;
import io.smallrye.config.EnvConfigSource;
import io.smallrye.config.SmallRyeConfig;
import io.smallrye.config.SmallRyeConfigBuilder;
import io.smallrye.config.WithName;
import io.smallrye.config.WithParentName;

/**
 * Keeps kubernetes/ (Kustomize base + overlays, Grafana dashboard) from drifting away from the code: ports, probe
 * paths, the environment-variable contract and the config keys behind it, secret references, scaling and shutdown
 * budgets, security context, scraping, and the metric names the dashboard queries. Plain JUnit: no Quarkus boot,
 * no cluster. Each overlay is resolved the way {@code kubectl apply -k} would (resources, generators, JSON patches,
 * images) so the checks see what a user actually applies.
 */
class ManifestsTest {

    static final Path ROOT = Path.of(System.getProperty("basedir", System.getProperty("user.dir"))).toAbsolutePath();
    static final Path K8S = ROOT.resolve("kubernetes");
    static final Path SRC = ROOT.resolve("src/main/java");
    static final Path APP_PROPERTIES = ROOT.resolve("src/main/resources/application.properties");
    static final Path DASHBOARD = K8S.resolve("grafana/device-gateway-dashboard.json");

    /** The deployment contract: environment variable -> the config key Quarkus maps it to. */
    static final Map<String, String> CONTRACT = new LinkedHashMap<>();
    static {
        CONTRACT.put("GATEWAY_MQTT_HOST", "gateway.mqtt.host");
        CONTRACT.put("GATEWAY_MQTT_PORT", "gateway.mqtt.port");
        CONTRACT.put("GATEWAY_MQTT_USERNAME", "gateway.mqtt.username");
        CONTRACT.put("GATEWAY_MQTT_PASSWORD", "gateway.mqtt.password");
        CONTRACT.put("GATEWAY_MQTT_SHARED_GROUP", "gateway.mqtt.shared-group");
        CONTRACT.put("GATEWAY_MQTT_CLIENT_ID", "gateway.mqtt.client-id");
        // TLS to the broker: a Quarkus TLS registry configuration reading the PEM files of the mounted Secret. The key
        // pair is named "client": QUARKUS_TLS_MQTT_KEY_STORE_PEM_0_CERT would read as a list index (no key store).
        CONTRACT.put("GATEWAY_MQTT_TLS_CONFIGURATION_NAME", "gateway.mqtt.tls-configuration-name");
        CONTRACT.put("QUARKUS_TLS_MQTT_TRUST_STORE_PEM_CERTS", "quarkus.tls.mqtt.trust-store.pem.certs");
        CONTRACT.put("QUARKUS_TLS_MQTT_KEY_STORE_PEM_CLIENT_CERT", "quarkus.tls.mqtt.key-store.pem.client.cert");
        CONTRACT.put("QUARKUS_TLS_MQTT_KEY_STORE_PEM_CLIENT_KEY", "quarkus.tls.mqtt.key-store.pem.client.key");
        CONTRACT.put("KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap.servers");
        CONTRACT.put("QUARKUS_REDIS_HOSTS", "quarkus.redis.hosts");
        CONTRACT.put("GATEWAY_GRPC_AUTH_TOKENS", "gateway.grpc.auth.tokens");
        CONTRACT.put("GATEWAY_KAFKA_TOPICS_TELEMETRY", "gateway.kafka.topics.telemetry");
        CONTRACT.put("GATEWAY_KAFKA_TOPICS_EVENTS", "gateway.kafka.topics.events");
        CONTRACT.put("GATEWAY_KAFKA_TOPICS_DLQ", "gateway.kafka.topics.dlq");
        CONTRACT.put("QUARKUS_LOG_CONSOLE_JSON", "quarkus.log.console.json");
        // Needed while application.properties sets quarkus.log.console.json.enabled (it wins over the key above).
        CONTRACT.put("QUARKUS_LOG_CONSOLE_JSON_ENABLED", "quarkus.log.console.json.enabled");
    }
    /** Environment variables the JVM itself reads (not config keys): the pods' JVM options and malloc arenas. */
    static final Set<String> JVM_ENV = Set.of("JDK_JAVA_OPTIONS", "MALLOC_ARENA_MAX");
    static final Path DOCKERFILE_JVM = ROOT.resolve("native-build/Dockerfile.jvm");
    static final Path MAKEFILE = ROOT.resolve("Makefile");
    /** gateway.* keys the manifests already set but the code does not define yet. */
    static final Set<String> PLANNED_KEYS = Set.of("gateway.grpc.auth.tokens");
    /** Non-gateway keys of the contract: Quarkus/Kafka keys, no @ConfigMapping of ours behind them. */
    static final Set<String> FRAMEWORK_KEYS = Set.of("kafka.bootstrap.servers", "quarkus.redis.hosts",
            "quarkus.log.console.json", "quarkus.log.console.json.enabled",
            // resolved against the TLS registry's own config mapping in brokerTlsIsOnAndReadsTheMountedSecret
            "quarkus.tls.mqtt.trust-store.pem.certs", "quarkus.tls.mqtt.key-store.pem.client.cert",
            "quarkus.tls.mqtt.key-store.pem.client.key");
    /** Values that must never sit in a ConfigMap or a literal. */
    static final Set<String> SECRET_ENV = Set.of("GATEWAY_MQTT_USERNAME", "GATEWAY_MQTT_PASSWORD", "QUARKUS_REDIS_HOSTS",
            "GATEWAY_GRPC_AUTH_TOKENS");
    /**
     * Every pod must get these. GATEWAY_MQTT_CLIENT_ID is optional (the app derives one from HOSTNAME);
     * QUARKUS_LOG_CONSOLE_JSON_ENABLED is required only while application.properties sets the key (checked below).
     */
    static final Set<String> REQUIRED_ENV = CONTRACT.keySet().stream()
            .filter(n -> !n.equals("GATEWAY_MQTT_CLIENT_ID") && !n.equals("QUARKUS_LOG_CONSOLE_JSON_ENABLED"))
            .collect(Collectors.toCollection(LinkedHashSet::new));

    static final int PORT = 8080;
    /** TLS to the broker: the Secret with ca.crt, tls.crt and tls.key, and where both overlays mount it. */
    static final String MQTT_TLS_SECRET = "device-gateway-mqtt-tls";
    static final Path MQTT_TLS_MOUNT = Path.of("/etc/device-gateway/mqtt-tls");
    /** Knative's queue-proxy blocks the user container's preStop this long before the app gets SIGTERM. */
    static final int KNATIVE_DRAIN_SECONDS = 30;
    /** quarkus.shutdown.timeout the manifests are sized for, unless application.properties says otherwise. */
    static final int DEFAULT_SHUTDOWN_SECONDS = 25;
    /**
     * After open calls: the Kafka writers' flush and close (ingest 2 + 1 s, presence 1 + 1 s, command results
     * 1 + 1 s, registry 0.5 + 0.5 s), the last duplicate-removal commits (0.5 s) and the last session writes to
     * Redis (1 s): 9.5 s, counted as 10.
     */
    static final int WRITERS_CLOSE_SECONDS = 10;

    static final Set<String> ALLOWED_METRIC_PREFIXES = Set.of("gateway_", "jvm_", "process_", "http_server_");
    static final List<String> REQUIRED_METRICS = List.of("gateway_ingest_messages_total",
            "gateway_ingest_dead_letters_total", "gateway_ingest_latency_seconds", "gateway_ingest_latency_seconds_bucket",
            "gateway_ingest_in_flight", "gateway_mqtt_connected", "gateway_mqtt_inbound_paused",
            "gateway_mqtt_reconnects_total", "gateway_ingest_kafka_retries_total", "jvm_memory_used_bytes",
            "process_cpu_usage", "gateway_commands_total", "gateway_sendevent_latency_seconds_bucket",
            "gateway_commands_queued", "gateway_sessions_online");
    /** Dashboard metrics the code does not register yet. */
    static final Set<String> PLANNED_METRICS = Set.of("gateway_commands_total", "gateway_commands_queued",
            "gateway_sessions_online", "gateway_sendevent_latency_seconds", "gateway_sendevent_latency_seconds_bucket",
            "gateway_sendevent_latency_seconds_sum", "gateway_sendevent_latency_seconds_count",
            "gateway_sendevent_latency_seconds_max");

    /** One parsed YAML document and the file it came from. */
    record Doc(Path file, Map<String, Object> body) {
        String kind() {
            return str(body.get("kind"));
        }

        String apiVersion() {
            return str(body.get("apiVersion"));
        }

        String name() {
            return str(at(body, "metadata", "name"));
        }

        @Override
        public String toString() {
            return kind() + "/" + name() + " (" + ROOT.relativize(file) + ")";
        }
    }

    /** What applying one kustomization directory produces. */
    record Build(Path dir, List<Doc> docs, Set<Path> referencedFiles, Set<String> imageNames) {
        List<Doc> kind(String apiGroupPrefix, String kind) {
            return docs.stream().filter(d -> d.kind().equals(kind) && d.apiVersion().startsWith(apiGroupPrefix)).toList();
        }

        Doc one(String apiGroupPrefix, String kind) {
            List<Doc> found = kind(apiGroupPrefix, kind);
            assertEquals(1, found.size(), dir + ": expected exactly one " + kind + " (" + apiGroupPrefix + "), got " + found);
            return found.get(0);
        }
    }

    static Build base;
    static Build plain;
    static Build knative;
    static Properties appProperties;

    @BeforeAll
    static void load() throws IOException {
        assertTrue(Files.isDirectory(K8S), "no kubernetes/ directory under " + ROOT);
        base = build(K8S.resolve("base"));
        plain = build(K8S.resolve("overlays/plain"));
        knative = build(K8S.resolve("overlays/knative"));
        appProperties = new Properties();
        try (Reader r = Files.newBufferedReader(APP_PROPERTIES)) {
            appProperties.load(r);
        }
    }

    // ---------------------------------------------------------------- files and kustomizations

    @Test
    void everyYamlFileParsesAndIsAppliedByAnOverlay() throws IOException {
        List<Path> files = yamlFiles();
        assertTrue(files.size() >= 10, "expected the base and both overlays under kubernetes/, found " + files);
        Set<Path> referenced = new HashSet<>();
        referenced.addAll(plain.referencedFiles());
        referenced.addAll(knative.referencedFiles());
        for (Path f : files) {
            List<Object> docs = loadAll(f); // fails on a syntax error
            assertFalse(docs.isEmpty(), f + " is empty");
            for (Object d : docs) {
                if (d instanceof List<?> ops) { // a JSON 6902 patch
                    ops.forEach(op -> assertTrue(op instanceof Map<?, ?> m && m.get("op") != null && m.get("path") != null,
                            f + ": a patch list must hold {op, path} operations"));
                } else {
                    assertTrue(d instanceof Map<?, ?> m && m.get("apiVersion") != null && m.get("kind") != null,
                            f + ": every document needs apiVersion and kind");
                }
            }
            if (!isKustomization(f)) {
                assertTrue(referenced.contains(f.normalize()),
                        ROOT.relativize(f) + " is not listed by any kustomization that an overlay applies");
            }
        }
        assertTrue(referenced.contains(DASHBOARD.normalize()), "the Grafana dashboard is not generated into a ConfigMap");
    }

    @Test
    void baseDefinesTheSharedPieces() {
        assertNotNull(find(base, "ConfigMap", "device-gateway-config"), "base: ConfigMap device-gateway-config");
        assertNotNull(find(base, "Secret", "device-gateway-secrets"), "base: Secret device-gateway-secrets");
        assertFalse(base.kind("v1", "ServiceAccount").isEmpty(), "base: ServiceAccount");
        assertFalse(monitors(base).isEmpty(), "base: PodMonitor or ServiceMonitor");
        assertTrue(base.kind("", "Deployment").isEmpty() && base.kind("serving.knative.dev/", "Service").isEmpty(),
                "base must not contain a workload: each overlay brings its own");
        for (Build overlay : List.of(plain, knative)) {
            for (Doc d : base.docs()) {
                assertNotNull(find(overlay, d.kind(), d.name()), overlay.dir() + " does not include base's " + d);
            }
        }
        plain.one("apps/v1", "Deployment");
        plain.one("v1", "Service");
        plain.one("autoscaling/v2", "HorizontalPodAutoscaler");
        plain.one("policy/v1", "PodDisruptionBudget");
        knative.one("serving.knative.dev/v1", "Service");
        assertTrue(knative.kind("apps/", "Deployment").isEmpty(), "knative overlay: Knative creates the Deployment");
        for (Build overlay : List.of(plain, knative)) {
            String sa = str(at(workload(overlay).body(), "spec", "template", "spec", "serviceAccountName"));
            assertNotNull(find(base, "ServiceAccount", sa), overlay.dir() + ": serviceAccountName '" + sa + "' is not defined in base");
        }
    }

    @Test
    void containerImagesAreSetByTheOverlay() {
        for (Build overlay : List.of(plain, knative)) {
            for (Map<String, Object> c : containers(workload(overlay))) {
                String image = str(c.get("image"));
                String repo = image.replaceFirst("[:@].*$", "");
                assertTrue(overlay.imageNames().contains(repo) || image.contains("/"),
                        overlay.dir() + ": image '" + image + "' is neither a full reference nor rewritten by an images: entry");
            }
        }
    }

    // ---------------------------------------------------------------- ports and probes

    @Test
    void knativeServesEverythingOnPort8080NamedH2c() {
        Map<String, Object> c = single(containers(workload(knative)));
        List<Map<String, Object>> ports = maps(c.get("ports"));
        assertEquals(1, ports.size(), "Knative allows exactly one container port");
        assertEquals(PORT, num(ports.get(0).get("containerPort")));
        assertEquals("h2c", str(ports.get(0).get("name")), "Knative enables HTTP/2 cleartext (gRPC) by the port name h2c");
        assertProbes(c, "h2c");
        assertFalse(c.containsKey("startupProbe"), "Knative rejects startupProbe");
        assertFalse(c.containsKey("lifecycle"), "Knative rejects lifecycle hooks (it installs its own preStop)");
    }

    @Test
    void plainDeploymentAndServiceUsePort8080NamedHttpWithH2cAppProtocol() {
        Map<String, Object> c = single(containers(workload(plain)));
        Map<String, Object> port = single(maps(c.get("ports")));
        assertEquals(PORT, num(port.get("containerPort")));
        assertEquals("http", str(port.get("name")));
        assertProbes(c, "http");
        if (c.containsKey("startupProbe")) {
            assertProbe(c, "startupProbe", "/q/health/started", "http");
        }

        Doc svc = plain.one("v1", "Service");
        Map<String, Object> sp = single(maps(at(svc.body(), "spec", "ports")));
        assertTrue(List.of("http", PORT).contains(sp.get("targetPort")), "Service targetPort must be 'http' or 8080: " + sp);
        assertEquals("kubernetes.io/h2c", str(sp.get("appProtocol")), "gRPC needs appProtocol kubernetes.io/h2c");
        assertSelects(map(at(svc.body(), "spec", "selector")), workload(plain), svc.toString());
    }

    static void assertProbes(Map<String, Object> c, String portName) {
        assertProbe(c, "readinessProbe", "/q/health/ready", portName);
        assertProbe(c, "livenessProbe", "/q/health/live", portName);
    }

    static void assertProbe(Map<String, Object> c, String probe, String path, String portName) {
        Map<String, Object> get = map(at(c, probe, "httpGet"));
        assertNotNull(get, probe + ": an httpGet probe is required");
        assertEquals(path, str(get.get("path")), probe + " path");
        Object port = get.get("port");
        assertTrue(port == null || Integer.valueOf(PORT).equals(port) || portName.equals(port),
                probe + " must target the serving port (8080 or '" + portName + "'), not " + port);
    }

    // ---------------------------------------------------------------- environment contract

    @Test
    void everyEnvironmentVariableIsInTheContractAndRequiredOnesAreSet() {
        for (Build overlay : List.of(plain, knative)) {
            // name -> every source: "configmap" | "secret" | "literal" | "fieldRef" (env wins over envFrom in
            // Kubernetes, but a secret value sitting in a ConfigMap is a leak whichever wins)
            Map<String, Set<String>> sources = envSources(overlay);
            for (String name : sources.keySet()) {
                assertTrue(CONTRACT.containsKey(name) || JVM_ENV.contains(name), overlay.dir() + ": env var " + name
                        + " is not in the deployment contract " + CONTRACT.keySet() + " nor a JVM variable " + JVM_ENV);
            }
            for (String name : REQUIRED_ENV) {
                assertTrue(sources.containsKey(name), overlay.dir() + ": " + name + " is not set");
            }
            for (String name : SECRET_ENV) {
                assertEquals(Set.of("secret"), sources.get(name), overlay.dir() + ": " + name + " must come from a Secret only");
            }
            Set<String> clientId = sources.get("GATEWAY_MQTT_CLIENT_ID");
            assertTrue(clientId == null || clientId.equals(Set.of("fieldRef")), overlay.dir()
                    + ": a fixed GATEWAY_MQTT_CLIENT_ID makes replicas kick each other off the broker; leave it unset");
            Map<String, String> literals = literalEnv(overlay);
            assertEquals("true", literals.get("QUARKUS_LOG_CONSOLE_JSON"), overlay.dir() + ": JSON logs in containers");
            if (appProperties.containsKey("quarkus.log.console.json.enabled")) {
                assertEquals("true", literals.get("QUARKUS_LOG_CONSOLE_JSON_ENABLED"), overlay.dir()
                        + ": application.properties sets quarkus.log.console.json.enabled, which overrides "
                        + "QUARKUS_LOG_CONSOLE_JSON; set QUARKUS_LOG_CONSOLE_JSON_ENABLED=true as well");
            }
        }
    }

    @Test
    void everySecretAndConfigMapReferenceResolvesInBase() {
        for (Build overlay : List.of(plain, knative)) {
            Doc pod = workload(overlay);
            for (Map<String, Object> c : containers(pod)) {
                for (Map<String, Object> from : maps(c.get("envFrom"))) {
                    String secret = str(at(from, "secretRef", "name"));
                    String cm = str(at(from, "configMapRef", "name"));
                    assertTrue(!secret.isEmpty() || !cm.isEmpty(), pod + ": envFrom without a source");
                    if (!secret.isEmpty()) {
                        assertNotNull(find(base, "Secret", secret), pod + ": envFrom Secret " + secret + " is not defined in base");
                    }
                    if (!cm.isEmpty()) {
                        assertNotNull(find(base, "ConfigMap", cm), pod + ": envFrom ConfigMap " + cm + " is not defined in base");
                    }
                }
                for (Map<String, Object> env : maps(c.get("env"))) {
                    Map<String, Object> ref = map(at(env, "valueFrom", "secretKeyRef"));
                    if (ref != null) {
                        Doc s = find(base, "Secret", str(ref.get("name")));
                        assertNotNull(s, pod + ": " + env.get("name") + " refers to Secret " + ref.get("name") + ", not defined in base");
                        assertTrue(dataKeys(s).contains(str(ref.get("key"))),
                                pod + ": Secret " + s.name() + " has no key " + ref.get("key") + " for " + env.get("name"));
                    }
                    Map<String, Object> cmRef = map(at(env, "valueFrom", "configMapKeyRef"));
                    if (cmRef != null) {
                        Doc cm = find(base, "ConfigMap", str(cmRef.get("name")));
                        assertNotNull(cm, pod + ": " + env.get("name") + " refers to ConfigMap " + cmRef.get("name") + ", not in base");
                        assertTrue(dataKeys(cm).contains(str(cmRef.get("key"))), pod + ": ConfigMap key " + cmRef.get("key"));
                    }
                }
            }
        }
    }

    @Test
    void contractNamesMapToConfigKeysTheCodeDefines() throws Exception {
        Map<String, Class<?>> mappings = configMappings();
        assertTrue(mappings.containsKey("gateway.mqtt"), "found no @ConfigMapping(prefix = \"gateway.mqtt\") in " + SRC);
        for (Map.Entry<String, String> e : CONTRACT.entrySet()) {
            String env = e.getKey();
            String key = e.getValue();
            assertEquals(env, envName(key), "Quarkus maps " + env + " to a different key than " + key);
            if (FRAMEWORK_KEYS.contains(key)) {
                continue;
            }
            assertTrue(key.startsWith("gateway."), key + " is neither a gateway.* key nor a known framework key");
            String prefix = mappings.keySet().stream().filter(p -> key.startsWith(p + "."))
                    .max((a, b) -> a.length() - b.length()).orElse(null);
            if (prefix == null) {
                assertTrue(PLANNED_KEYS.contains(key), env + " -> " + key + ": no @ConfigMapping in the code covers it");
                continue;
            }
            List<String> path = List.of(key.substring(prefix.length() + 1).split("\\."));
            assertTrue(resolves(mappings.get(prefix), path), env + " -> " + key + ": " + mappings.get(prefix).getName()
                    + " (prefix " + prefix + ") has no such property");
        }
        for (String key : List.of("kafka.bootstrap.servers", "quarkus.redis.hosts")) {
            assertTrue(appProperties.containsKey(key), key + " is no longer declared in application.properties");
        }
    }

    @Test
    void brokerTlsIsOnAndReadsTheMountedSecret() {
        Doc secret = find(base, "Secret", MQTT_TLS_SECRET);
        assertNotNull(secret, "base: Secret " + MQTT_TLS_SECRET + " (template)");
        for (Build overlay : List.of(plain, knative)) {
            Doc pod = workload(overlay);
            Map<String, Object> c = single(containers(pod));
            // The environment read the way the gateway reads it: SmallRye Config's environment source turns names
            // back into keys through the config mappings (ours and the TLS registry's). A name that only looks
            // right (e.g. QUARKUS_TLS_MQTT_KEY_STORE_PEM_0_CERT, read as a list index) configures nothing.
            SmallRyeConfig config = new SmallRyeConfigBuilder()
                    .withSources(new EnvConfigSource(literalEnv(overlay), 300))
                    .withConverter(Path.class, 100, new PathConverter())
                    .withConverter(Duration.class, 100, new DurationConverter())
                    .withMapping(MqttConfig.class)
                    .withMapping(TlsConfig.class)
                    .build();
            String name = config.getConfigMapping(MqttConfig.class).tlsConfigurationName().orElse(null);
            assertNotNull(name, overlay.dir() + ": TLS to the broker is off (no GATEWAY_MQTT_TLS_CONFIGURATION_NAME)");
            TlsBucketConfig tls = config.getConfigMapping(TlsConfig.class).namedCertificateConfig().get(name);
            assertNotNull(tls, overlay.dir() + ": gateway.mqtt.tls-configuration-name=" + name
                    + " but the environment defines no quarkus.tls." + name + ".*");
            assertFalse(tls.trustAll(), overlay.dir() + ": trust-all TLS to the broker");
            assertTrue(tls.hostnameVerificationAlgorithm().isEmpty(), overlay.dir()
                    + ": hostname verification must stay on (the default)");
            List<Path> certs = tls.trustStore().flatMap(TrustStoreConfig::pem).flatMap(PemCertsConfig::certs)
                    .orElse(List.of());
            assertFalse(certs.isEmpty(), overlay.dir() + ": no trust store (the broker's CA) in quarkus.tls." + name);
            Map<String, PemKeyCertConfig.KeyCertConfig> keyPairs = tls.keyStore().flatMap(KeyStoreConfig::pem)
                    .map(PemKeyCertConfig::keyCerts).orElse(Map.of());
            assertEquals(1, keyPairs.size(), overlay.dir() + ": one client certificate (key-store) in quarkus.tls."
                    + name + ", found " + keyPairs.keySet());
            List<Path> files = new ArrayList<>(certs);
            keyPairs.values().forEach(pair -> files.addAll(List.of(pair.cert(), pair.key())));

            // ... and every one of those files is a key of the Secret, mounted read-only where the paths point
            Map<String, Object> volume = maps(at(pod.body(), "spec", "template", "spec", "volumes")).stream()
                    .filter(v -> MQTT_TLS_SECRET.equals(at(v, "secret", "secretName"))).findFirst().orElse(null);
            assertNotNull(volume, pod + ": no volume of Secret " + MQTT_TLS_SECRET);
            Map<String, Object> mount = maps(c.get("volumeMounts")).stream()
                    .filter(m -> volume.get("name").equals(m.get("name"))).findFirst().orElse(null);
            assertNotNull(mount, pod + ": volume " + volume.get("name") + " is not mounted");
            assertEquals(MQTT_TLS_MOUNT.toString(), str(mount.get("mountPath")), pod + ": mount path of " + MQTT_TLS_SECRET);
            assertEquals(Boolean.TRUE, mount.get("readOnly"), pod + ": " + MQTT_TLS_SECRET + " must be mounted read-only");
            assertFalse(mount.containsKey("subPath"), pod + ": a subPath mount never sees a renewed certificate");
            for (Path file : files) {
                assertEquals(MQTT_TLS_MOUNT, file.getParent(), overlay.dir() + ": " + file + " is not in the mounted Secret");
                assertTrue(dataKeys(secret).contains(file.getFileName().toString()), overlay.dir() + ": " + file
                        + " is no key of Secret " + MQTT_TLS_SECRET + " " + dataKeys(secret));
            }
        }
    }

    // ---------------------------------------------------------------- scaling, shutdown, resources, security

    @Test
    void knativeNeverScalesToZeroAndHasRoomToDrain() {
        Doc ksvc = workload(knative);
        Map<String, Object> ann = map(at(ksvc.body(), "spec", "template", "metadata", "annotations"));
        assertNotNull(ann, ksvc + ": autoscaling annotations on spec.template.metadata");
        int min = Integer.parseInt(str(ann.get("autoscaling.knative.dev/min-scale")));
        assertTrue(min >= 1, "min-scale must be >= 1: the pods hold the MQTT subscriptions, MQTT never wakes a scaled-to-zero service");
        int max = Integer.parseInt(str(ann.get("autoscaling.knative.dev/max-scale")));
        assertTrue(max >= min, "max-scale < min-scale");
        String metric = str(ann.get("autoscaling.knative.dev/metric"));
        assertTrue(Set.of("concurrency", "rps", "cpu").contains(metric), "autoscaling metric " + metric);
        if (metric.equals("cpu")) {
            assertEquals("hpa.autoscaling.knative.dev", str(ann.get("autoscaling.knative.dev/class")), "cpu needs the HPA class");
        }
        int timeout = num(at(ksvc.body(), "spec", "template", "spec", "timeoutSeconds"));
        assertTrue(timeout >= KNATIVE_DRAIN_SECONDS + shutdownSeconds(), "timeoutSeconds " + timeout
                + " is also the pod's grace period: it must cover queue-proxy's drain (" + KNATIVE_DRAIN_SECONDS
                + " s) plus the app's shutdown budget (" + shutdownSeconds() + " s)");
        assertFalse(map(at(ksvc.body(), "spec", "template", "spec")).containsKey("terminationGracePeriodSeconds"),
                "Knative rejects terminationGracePeriodSeconds");
    }

    @Test
    void plainScalesOnItsDeploymentAndDrainsWithinTheGracePeriod() {
        Doc deployment = workload(plain);
        Doc hpa = plain.one("autoscaling/v2", "HorizontalPodAutoscaler");
        assertEquals("Deployment", str(at(hpa.body(), "spec", "scaleTargetRef", "kind")));
        assertEquals(deployment.name(), str(at(hpa.body(), "spec", "scaleTargetRef", "name")), hpa + " scales another Deployment");
        assertTrue(num(at(hpa.body(), "spec", "minReplicas")) >= 1, "HPA minReplicas");
        assertFalse(map(at(deployment.body(), "spec")).containsKey("replicas"), "the HPA owns replicas; re-applying would reset it");
        Doc pdb = plain.one("policy/v1", "PodDisruptionBudget");
        assertSelects(map(at(pdb.body(), "spec", "selector", "matchLabels")), deployment, pdb.toString());

        int grace = num(at(deployment.body(), "spec", "template", "spec", "terminationGracePeriodSeconds"));
        assertEquals(40, grace, "terminationGracePeriodSeconds");
        Map<String, Object> c = single(containers(deployment));
        Object sleep = at(c, "lifecycle", "preStop", "sleep", "seconds");
        int preStop = sleep == null ? 0 : num(sleep);
        assertTrue(preStop + shutdownSeconds() <= grace, "preStop " + preStop + " s + the app's shutdown budget "
                + shutdownSeconds() + " s exceed terminationGracePeriodSeconds " + grace);
    }

    @Test
    void resourcesMatchTheMeasuredJvmFootprint() {
        for (Build overlay : List.of(plain, knative)) {
            Map<String, Object> c = single(containers(workload(overlay)));
            assertEquals("250m", str(at(c, "resources", "requests", "cpu")), overlay.dir() + " cpu request");
            assertEquals(MEMORY_REQUEST, str(at(c, "resources", "requests", "memory")), overlay.dir() + " memory request");
            assertEquals(MEMORY_LIMIT, str(at(c, "resources", "limits", "memory")), overlay.dir() + " memory limit");
        }
    }

    /** README (Footprint): idle RSS and RSS under full QoS 1 load with these options, measured by `make rss`. */
    static final String MEMORY_REQUEST = "192Mi";
    static final String MEMORY_LIMIT = "448Mi";
    /** Options a small JVM pod needs; the value of each is checked below. */
    static final List<String> REQUIRED_JVM_FLAGS = List.of("-XX:+UseSerialGC", "-XX:MaxRAMPercentage=",
            "-XX:ActiveProcessorCount=", "-Xss", "-XX:MaxMetaspaceSize=", "-XX:ReservedCodeCacheSize=",
            "-XX:+ExitOnOutOfMemoryError");

    @Test
    void jvmOptionsSuitASmallPodAndMatchTheImage() throws IOException {
        String options = null;
        for (Build overlay : List.of(plain, knative)) {
            Map<String, String> env = literalEnv(overlay);
            String value = env.get("JDK_JAVA_OPTIONS");
            assertNotNull(value, overlay.dir() + ": JDK_JAVA_OPTIONS is not set");
            assertEquals("2", env.get("MALLOC_ARENA_MAX"), overlay.dir() + ": MALLOC_ARENA_MAX");
            assertTrue(options == null || options.equals(value), "both overlays run the same JVM options");
            options = value;
        }
        List<String> flags = List.of(options.trim().split("\\s+"));
        for (String required : REQUIRED_JVM_FLAGS) {
            assertTrue(flags.stream().anyMatch(f -> f.startsWith(required)), "JDK_JAVA_OPTIONS lacks " + required);
        }
        // the heap follows the container limit: a fixed -Xmx/-Xms would not, and another GC would undo SerialGC
        assertTrue(flags.stream().noneMatch(f -> f.startsWith("-Xmx") || f.startsWith("-Xms")
                || f.matches("-XX:\\+Use(G1|Parallel|Z|Shenandoah)GC")), "no fixed heap size, no other GC: " + options);
        long limitMi = Long.parseLong(MEMORY_LIMIT.replace("Mi", ""));
        double percent = Double.parseDouble(flag(flags, "-XX:MaxRAMPercentage="));
        long heapMi = (long) (limitMi * percent / 100);
        long metaspaceMi = megabytes(flag(flags, "-XX:MaxMetaspaceSize="));
        long codeMi = megabytes(flag(flags, "-XX:ReservedCodeCacheSize="));
        // what the heap leaves must hold metaspace and code cache at their bounds plus ~64 MiB of the rest (thread
        // stacks, Netty and NIO buffers, GC and compiler memory, the JVM's own text): else the pod is killed first
        assertTrue(heapMi + metaspaceMi + codeMi + 64 <= limitMi, "heap " + heapMi + " MiB + metaspace " + metaspaceMi
                + " + code cache " + codeMi + " + 64 MiB exceed the limit of " + limitMi + " MiB");
        // the ingest bound (32 MiB of payloads, ~3x that with envelopes and producer buffers) must fit the heap
        assertTrue(heapMi >= 128, "heap " + heapMi + " MiB is below the ingest bound's ~100 MiB plus the live set");
        assertTrue(Integer.parseInt(flag(flags, "-XX:ActiveProcessorCount=")) <= 2, "sized for a small pod");

        // the image defaults are the same options (a pod without the ConfigMap runs as measured too)
        String dockerfile = Files.readString(DOCKERFILE_JVM);
        Matcher m = Pattern.compile("JDK_JAVA_OPTIONS=\"([^\"]*)\"").matcher(dockerfile);
        int stages = 0;
        while (m.find()) {
            assertEquals(options, m.group(1), DOCKERFILE_JVM + ": JDK_JAVA_OPTIONS differs from the ConfigMap");
            stages++;
        }
        assertEquals(2, stages, DOCKERFILE_JVM + ": both targets (jvm, aot) set JDK_JAVA_OPTIONS");
        assertTrue(dockerfile.contains("MALLOC_ARENA_MAX=2"), DOCKERFILE_JVM + ": MALLOC_ARENA_MAX");
        assertTrue(dockerfile.contains("AS aot") && dockerfile.contains("-XX:AOTCache="), "an image target with app.aot");
        // the AOT cache is trained with these options (make package-aot reads them from the ConfigMap)
        assertTrue(Files.readString(MAKEFILE).contains("JDK_JAVA_OPTIONS") && Files.readString(MAKEFILE)
                .contains("-Daot.jvm.options=\"$(POD_JVM_OPTIONS)\""), "make package-aot trains with the pods' options");
    }

    static String flag(List<String> flags, String prefix) {
        return flags.stream().filter(f -> f.startsWith(prefix)).map(f -> f.substring(prefix.length())).findFirst()
                .orElseThrow(() -> new AssertionError("no " + prefix));
    }

    static long megabytes(String size) {
        String s = size.toLowerCase(java.util.Locale.ROOT);
        if (s.endsWith("g")) {
            return Long.parseLong(s.substring(0, s.length() - 1)) * 1024;
        }
        if (s.endsWith("m")) {
            return Long.parseLong(s.substring(0, s.length() - 1));
        }
        return Long.parseLong(s.replace("k", "")) / 1024;
    }

    @Test
    void containersRunLockedDown() {
        for (Build overlay : List.of(plain, knative)) {
            Doc pod = workload(overlay);
            Map<String, Object> podSpec = map(at(pod.body(), "spec", "template", "spec"));
            Map<String, Object> podSc = Optional.ofNullable(map(podSpec.get("securityContext"))).orElse(Map.of());
            List<Map<String, Object>> volumes = maps(podSpec.get("volumes"));
            for (Map<String, Object> c : containers(pod)) {
                Map<String, Object> sc = Optional.ofNullable(map(c.get("securityContext"))).orElse(Map.of());
                String where = pod + " container " + c.get("name");
                assertEquals(Boolean.TRUE, sc.getOrDefault("runAsNonRoot", podSc.get("runAsNonRoot")), where + ": runAsNonRoot");
                assertEquals(Boolean.TRUE, sc.get("readOnlyRootFilesystem"), where + ": readOnlyRootFilesystem");
                assertEquals(Boolean.FALSE, sc.get("allowPrivilegeEscalation"), where + ": allowPrivilegeEscalation");
                assertTrue(strings(at(sc, "capabilities", "drop")).contains("ALL"), where + ": capabilities.drop ALL");
                Object seccomp = Optional.ofNullable(at(sc, "seccompProfile", "type")).orElse(at(podSc, "seccompProfile", "type"));
                assertEquals("RuntimeDefault", seccomp, where + ": seccompProfile RuntimeDefault");
                Map<String, Object> tmp = maps(c.get("volumeMounts")).stream()
                        .filter(m -> "/tmp".equals(m.get("mountPath"))).findFirst().orElse(null);
                assertNotNull(tmp, where + ": a writable /tmp is needed with a read-only root filesystem");
                assertTrue(volumes.stream().anyMatch(v -> tmp.get("name").equals(v.get("name")) && v.containsKey("emptyDir")),
                        where + ": /tmp must be an emptyDir volume");
            }
        }
    }

    // ---------------------------------------------------------------- monitoring

    @Test
    void prometheusScrapesQMetricsOnThePortThePodsReallyHave() {
        // Knative renames the user container's port to "user-port" in the pods it creates.
        Map<Build, String> podPortName = Map.of(plain, "http", knative, "user-port");
        for (Build overlay : List.of(plain, knative)) {
            List<Doc> monitors = monitors(overlay);
            assertEquals(1, monitors.size(), overlay.dir() + ": one PodMonitor/ServiceMonitor");
            Doc m = monitors.get(0);
            String endpointsKey = m.kind().equals("PodMonitor") ? "podMetricsEndpoints" : "endpoints";
            Map<String, Object> ep = single(maps(at(m.body(), "spec", endpointsKey)));
            assertEquals("/q/metrics", str(ep.get("path")), m + " path");
            if (m.kind().equals("PodMonitor")) {
                assertSelects(map(at(m.body(), "spec", "selector", "matchLabels")), workload(overlay), m.toString());
                assertEquals(podPortName.get(overlay), str(ep.get("port")), overlay.dir() + ": " + m + " port name");
            } else {
                assertEquals("http", str(ep.get("port")), m + " port name");
            }
        }
    }

    @Test
    void dashboardQueriesOnlyKnownMetrics() throws Exception {
        JsonNode dash = new ObjectMapper().readTree(DASHBOARD.toFile());
        assertTrue(dash.path("panels").size() > 0, "dashboard has no panels");
        List<String> queries = new ArrayList<>();
        dash.findValues("expr").forEach(n -> queries.add(n.asText()));
        dash.path("templating").path("list").forEach(v -> {
            JsonNode q = v.path("query");
            if (v.path("type").asText().equals("query")) {
                queries.add(q.isTextual() ? q.asText() : q.path("query").asText());
            }
        });
        assertTrue(queries.size() >= REQUIRED_METRICS.size(), "too few queries: " + queries);
        Set<String> used = new TreeSet<>();
        for (String q : queries) {
            Set<String> names = metricNames(q);
            assertFalse(names.isEmpty(), "query names no metric: " + q);
            used.addAll(names);
        }
        Set<String> fromCode = prometheusNamesOfMeters();
        assertTrue(fromCode.contains("gateway_ingest_messages_total"), "meter scan found " + fromCode);
        for (String name : used) {
            assertTrue(ALLOWED_METRIC_PREFIXES.stream().anyMatch(name::startsWith),
                    "dashboard queries " + name + "; allowed prefixes " + ALLOWED_METRIC_PREFIXES);
            if (name.startsWith("gateway_")) {
                assertTrue(fromCode.contains(name) || PLANNED_METRICS.contains(name),
                        "dashboard queries " + name + ", which no meter in src/main/java produces");
            }
        }
        for (String required : REQUIRED_METRICS) {
            assertTrue(used.contains(required), "dashboard has no panel on " + required);
        }
    }

    @Test
    void workflowCopiesAreIdentical() throws IOException {
        Path template = ROOT.resolve("native-build/github-workflow.yml");
        Path active = ROOT.resolve(".github/workflows/native.yml");
        assertEquals(Files.readString(template), Files.readString(active), active + " differs from " + template);
        Map<String, Object> wf = map(loadAll(template).get(0));
        assertTrue(wf.containsKey("jobs"), "workflow without jobs");
    }

    // ================================================================ kustomize model

    static final Set<String> SUPPORTED_KUSTOMIZATION_KEYS = Set.of("apiVersion", "kind", "resources", "patches", "images",
            "configMapGenerator", "generatorOptions", "labels", "commonAnnotations", "namespace");

    static Build build(Path dir) throws IOException {
        Path kfile = Stream.of("kustomization.yaml", "kustomization.yml", "Kustomization").map(dir::resolve)
                .filter(Files::isRegularFile).findFirst().orElse(null);
        assertNotNull(kfile, dir + " has no kustomization.yaml");
        Map<String, Object> k = map(single(loadAll(kfile)));
        for (String key : k.keySet()) {
            assertTrue(SUPPORTED_KUSTOMIZATION_KEYS.contains(key), kfile + ": '" + key
                    + "' is not understood by ManifestsTest; extend the test before using it");
        }
        List<Doc> docs = new ArrayList<>();
        Set<Path> referenced = new HashSet<>();
        Set<String> images = new HashSet<>();
        for (String r : strings(k.get("resources"))) {
            Path p = dir.resolve(r).normalize();
            assertTrue(Files.exists(p), kfile + " lists " + r + ", which does not exist");
            if (Files.isDirectory(p)) {
                Build sub = build(p);
                docs.addAll(sub.docs());
                referenced.addAll(sub.referencedFiles());
                images.addAll(sub.imageNames());
            } else {
                referenced.add(p);
                for (Object o : loadAll(p)) {
                    docs.add(new Doc(p, map(o)));
                }
            }
        }
        for (Map<String, Object> gen : maps(k.get("configMapGenerator"))) {
            Map<String, Object> data = new LinkedHashMap<>();
            for (String f : strings(gen.get("files"))) {
                String[] kv = f.split("=", 2);
                Path p = dir.resolve(kv[kv.length - 1]).normalize();
                assertTrue(Files.isRegularFile(p), kfile + ": configMapGenerator file " + f + " does not exist");
                referenced.add(p);
                data.put(kv.length == 2 ? kv[0] : p.getFileName().toString(), Files.readString(p));
            }
            Map<String, Object> cm = new LinkedHashMap<>();
            cm.put("apiVersion", "v1");
            cm.put("kind", "ConfigMap");
            cm.put("metadata", new LinkedHashMap<>(Map.of("name", str(gen.get("name")))));
            cm.put("data", data);
            docs.add(new Doc(kfile, cm));
        }
        for (Map<String, Object> patch : maps(k.get("patches"))) {
            String path = str(patch.get("path"));
            assertFalse(path.isEmpty(), kfile + ": only file patches (path:) are understood by ManifestsTest");
            Path p = dir.resolve(path).normalize();
            assertTrue(Files.isRegularFile(p), kfile + ": patch " + path + " does not exist");
            referenced.add(p);
            Object ops = single(loadAll(p));
            assertTrue(ops instanceof List, p + ": only JSON 6902 patches are understood by ManifestsTest");
            Map<String, Object> target = map(patch.get("target"));
            assertNotNull(target, kfile + ": patch " + path + " needs a target");
            List<Doc> targets = docs.stream().filter(d -> matches(d, target)).toList();
            assertEquals(1, targets.size(), kfile + ": patch " + path + " target " + target + " matches " + targets);
            for (Map<String, Object> op : maps(ops)) {
                applyJsonPatch(targets.get(0).body(), op, p);
            }
        }
        for (Map<String, Object> image : maps(k.get("images"))) {
            images.add(str(image.get("name")));
        }
        return new Build(dir, docs, referenced, images);
    }

    static boolean matches(Doc d, Map<String, Object> target) {
        String group = str(target.get("group"));
        return (!target.containsKey("kind") || d.kind().equals(target.get("kind")))
                && (!target.containsKey("name") || d.name().equals(target.get("name")))
                && (group.isEmpty() || d.apiVersion().startsWith(group + "/"));
    }

    @SuppressWarnings("unchecked")
    static void applyJsonPatch(Map<String, Object> doc, Map<String, Object> op, Path file) {
        String[] parts = str(op.get("path")).substring(1).split("/");
        Object parent = doc;
        for (int i = 0; i < parts.length - 1; i++) {
            parent = parent instanceof List<?> l ? l.get(Integer.parseInt(parts[i])) : ((Map<String, Object>) parent).get(parts[i]);
            assertNotNull(parent, file + ": patch path " + op.get("path") + " does not exist");
        }
        String last = parts[parts.length - 1];
        String kind = str(op.get("op"));
        if (parent instanceof List<?> l) {
            List<Object> list = (List<Object>) l;
            int idx = last.equals("-") ? list.size() : Integer.parseInt(last);
            switch (kind) {
                case "replace" -> list.set(idx, op.get("value"));
                case "add" -> list.add(idx, op.get("value"));
                case "remove" -> list.remove(idx);
                default -> fail(file + ": patch op " + kind + " is not understood by ManifestsTest");
            }
        } else {
            Map<String, Object> m = (Map<String, Object>) parent;
            switch (kind) {
                case "replace" -> {
                    assertTrue(m.containsKey(last), file + ": replace of a missing field " + op.get("path"));
                    m.put(last, op.get("value"));
                }
                case "add" -> m.put(last, op.get("value"));
                case "remove" -> m.remove(last);
                default -> fail(file + ": patch op " + kind + " is not understood by ManifestsTest");
            }
        }
    }

    static Doc workload(Build b) {
        List<Doc> found = new ArrayList<>(b.kind("apps/v1", "Deployment"));
        found.addAll(b.kind("serving.knative.dev/", "Service"));
        assertEquals(1, found.size(), b.dir() + ": expected one workload (Deployment or Knative Service), got " + found);
        return found.get(0);
    }

    static List<Map<String, Object>> containers(Doc workload) {
        List<Map<String, Object>> cs = maps(at(workload.body(), "spec", "template", "spec", "containers"));
        assertFalse(cs.isEmpty(), workload + " has no containers");
        return cs;
    }

    static List<Doc> monitors(Build b) {
        List<Doc> m = new ArrayList<>(b.kind("monitoring.coreos.com/", "PodMonitor"));
        m.addAll(b.kind("monitoring.coreos.com/", "ServiceMonitor"));
        return m;
    }

    static Doc find(Build b, String kind, String name) {
        return b.docs().stream().filter(d -> d.kind().equals(kind) && d.name().equals(name)).findFirst().orElse(null);
    }

    static void assertSelects(Map<String, Object> selector, Doc workload, String who) {
        assertNotNull(selector, who + ": no selector");
        assertFalse(selector.isEmpty(), who + ": empty selector");
        Map<String, Object> labels = map(at(workload.body(), "spec", "template", "metadata", "labels"));
        assertNotNull(labels, workload + ": pod template has no labels");
        selector.forEach((k, v) -> assertEquals(v, labels.get(k), who + " selects " + k + "=" + v + ", pods of " + workload
                + " have " + labels));
    }

    static Set<String> dataKeys(Doc d) {
        Set<String> keys = new TreeSet<>();
        Optional.ofNullable(map(d.body().get("data"))).ifPresent(m -> keys.addAll(m.keySet()));
        Optional.ofNullable(map(d.body().get("stringData"))).ifPresent(m -> keys.addAll(m.keySet()));
        return keys;
    }

    /** Env var name -> where its values come from, over envFrom (ConfigMap/Secret keys) and env entries. */
    static Map<String, Set<String>> envSources(Build overlay) {
        Map<String, Set<String>> sources = new LinkedHashMap<>();
        for (Map<String, Object> c : containers(workload(overlay))) {
            for (Map<String, Object> from : maps(c.get("envFrom"))) {
                String prefix = str(from.get("prefix"));
                String cm = str(at(from, "configMapRef", "name"));
                String secret = str(at(from, "secretRef", "name"));
                Doc src = cm.isEmpty() ? find(overlay, "Secret", secret) : find(overlay, "ConfigMap", cm);
                assertNotNull(src, overlay.dir() + ": envFrom source " + from + " not found");
                dataKeys(src).forEach(k -> sources.computeIfAbsent(prefix + k, x -> new TreeSet<>())
                        .add(cm.isEmpty() ? "secret" : "configmap"));
            }
            for (Map<String, Object> env : maps(c.get("env"))) {
                String name = str(env.get("name"));
                Map<String, Object> vf = map(env.get("valueFrom"));
                sources.computeIfAbsent(name, x -> new TreeSet<>()).add(vf == null ? "literal"
                        : vf.containsKey("secretKeyRef") ? "secret"
                                : vf.containsKey("configMapKeyRef") ? "configmap" : "fieldRef");
            }
        }
        return sources;
    }

    /** Plain values of env vars, from env literals and envFrom ConfigMaps. */
    static Map<String, String> literalEnv(Build overlay) {
        Map<String, String> values = new LinkedHashMap<>();
        for (Map<String, Object> c : containers(workload(overlay))) {
            for (Map<String, Object> from : maps(c.get("envFrom"))) {
                Doc cm = find(overlay, "ConfigMap", str(at(from, "configMapRef", "name")));
                if (cm != null && map(cm.body().get("data")) != null) {
                    map(cm.body().get("data")).forEach((k, v) -> values.put(str(from.get("prefix")) + k, str(v)));
                }
            }
            for (Map<String, Object> env : maps(c.get("env"))) {
                if (env.containsKey("value")) {
                    values.put(str(env.get("name")), str(env.get("value")));
                }
            }
        }
        return values;
    }

    // ================================================================ code side

    /** SmallRye Config's environment variable name for a property name. */
    static String envName(String key) {
        return key.replaceAll("[^A-Za-z0-9]", "_").toUpperCase();
    }

    static final Pattern CONFIG_MAPPING = Pattern.compile(
            "@ConfigMapping\\(\\s*prefix\\s*=\\s*\"([^\"]+)\"[^)]*\\)\\s*(?:public\\s+)?interface\\s+(\\w+)");

    /** prefix -> @ConfigMapping interface, found in src/main/java and loaded from the compiled classes. */
    static Map<String, Class<?>> configMappings() throws Exception {
        Map<String, Class<?>> found = new LinkedHashMap<>();
        for (Path f : javaSources()) {
            String src = Files.readString(f);
            Matcher m = CONFIG_MAPPING.matcher(src);
            while (m.find()) {
                Matcher pkg = Pattern.compile("^package\\s+([\\w.]+);", Pattern.MULTILINE).matcher(src);
                assertTrue(pkg.find(), f + " has no package");
                String outer = f.getFileName().toString().replace(".java", "");
                String cls = pkg.group(1) + "." + (m.group(2).equals(outer) ? outer : outer + "$" + m.group(2));
                Class<?> c = Class.forName(cls, false, ManifestsTest.class.getClassLoader());
                assertEquals(m.group(1), c.getAnnotation(ConfigMapping.class).prefix(), cls);
                found.put(m.group(1), c);
            }
        }
        return found;
    }

    /** Whether a (kebab-case) property path exists on a config mapping interface, following nested groups. */
    static boolean resolves(Class<?> type, List<String> path) {
        if (path.isEmpty()) {
            return true;
        }
        for (Method method : type.getMethods()) {
            if (method.getParameterCount() != 0 || method.isDefault() || method.getDeclaringClass() == Object.class) {
                continue;
            }
            Class<?> ret = method.getReturnType();
            if (method.isAnnotationPresent(WithParentName.class) && ret.isInterface() && resolves(ret, path)) {
                return true;
            }
            WithName withName = method.getAnnotation(WithName.class);
            String name = withName != null ? withName.value() : kebab(method.getName());
            if (!name.equals(path.get(0))) {
                continue;
            }
            if (path.size() == 1) {
                return true;
            }
            if (Map.class.isAssignableFrom(ret)) {
                return true; // any sub-key
            }
            if (ret == Optional.class && method.getGenericReturnType() instanceof ParameterizedType pt
                    && pt.getActualTypeArguments()[0] instanceof Class<?> inner) {
                ret = inner;
            }
            if (ret.isInterface() && !ret.getName().startsWith("java.")) {
                return resolves(ret, path.subList(1, path.size()));
            }
        }
        return false;
    }

    static String kebab(String camel) {
        return camel.replaceAll("([a-z0-9])([A-Z])", "$1-$2").toLowerCase();
    }

    static final Pattern METER = Pattern.compile(
            "\\b(Counter|FunctionCounter|Gauge|TimeGauge|Timer|FunctionTimer|LongTaskTimer|DistributionSummary)\\.builder\\(\\s*\"([^\"]+)\"");
    static final Pattern REGISTRY_METER = Pattern.compile("\\.(counter|gauge|timer|summary)\\(\\s*\"([^\"]+)\"");
    static final Pattern ANNOTATED_METER = Pattern.compile("@(Counted|Timed)\\(\\s*(?:value\\s*=\\s*)?\"([^\"]+)\"");

    /** Prometheus series names of every Micrometer meter registered in src/main/java. */
    static Set<String> prometheusNamesOfMeters() throws IOException {
        Set<String> names = new TreeSet<>();
        for (Path f : javaSources()) {
            String src = Files.readString(f);
            for (Pattern p : List.of(METER, REGISTRY_METER, ANNOTATED_METER)) {
                Matcher m = p.matcher(src);
                while (m.find()) {
                    String base = m.group(2).replaceAll("[^A-Za-z0-9_:]", "_");
                    switch (m.group(1).toLowerCase()) {
                        case "counter", "functioncounter", "counted" -> names.add(base.endsWith("_total") ? base : base + "_total");
                        case "gauge" -> names.add(base);
                        case "timer", "functiontimer", "timegauge", "longtasktimer", "timed" -> {
                            for (String s : List.of("", "_count", "_sum", "_max", "_bucket", "_active_count", "_duration_sum")) {
                                names.add(base + "_seconds" + s);
                            }
                        }
                        default -> { // distribution summary
                            for (String s : List.of("", "_count", "_sum", "_max", "_bucket")) {
                                names.add(base + s);
                            }
                        }
                    }
                }
            }
        }
        return names;
    }

    static final Set<String> PROMQL_WORDS = Set.of("by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "and", "or", "unless", "offset", "inf", "nan");

    /** Metric names in a PromQL expression or a Grafana label_values(...) variable query. */
    static Set<String> metricNames(String query) {
        String q = query.trim();
        Matcher lv = Pattern.compile("^label_values\\((.*),\\s*[A-Za-z_]\\w*\\s*\\)$", Pattern.DOTALL).matcher(q);
        if (lv.matches()) {
            q = lv.group(1);
        }
        q = q.replaceAll("\"(?:[^\"\\\\]|\\\\.)*\"", "\"\"") // string literals
                .replaceAll("\\{[^}]*}", " ") // label matchers
                .replaceAll("\\[[^]]*]", " ") // range selectors
                .replaceAll("\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^)]*\\)", " "); // label lists
        Set<String> names = new TreeSet<>();
        Matcher m = Pattern.compile("(?<![\\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\\s*\\()?").matcher(q);
        while (m.find()) {
            if (m.group(2) == null && !PROMQL_WORDS.contains(m.group(1).toLowerCase())) {
                names.add(m.group(1));
            }
        }
        return names;
    }

    /**
     * The app's whole shutdown budget: the MQTT drain (gateway.mqtt.drain-timeout), then open calls
     * (quarkus.shutdown.timeout), then the Kafka writers' bounded close (WRITERS_CLOSE_SECONDS).
     */
    static int shutdownSeconds() {
        return seconds("gateway.mqtt.drain-timeout", 20) + seconds("quarkus.shutdown.timeout", DEFAULT_SHUTDOWN_SECONDS)
                + WRITERS_CLOSE_SECONDS;
    }

    private static int seconds(String key, int otherwise) {
        String v = appProperties.getProperty(key);
        if (v == null) {
            return otherwise;
        }
        Matcher m = Pattern.compile("^(?:PT)?(\\d+)S$", Pattern.CASE_INSENSITIVE).matcher(v.trim());
        assertTrue(m.matches(), key + "=" + v + ": ManifestsTest understands only seconds (e.g. 25s)");
        return Integer.parseInt(m.group(1));
    }

    // ================================================================ plumbing

    static List<Path> yamlFiles() throws IOException {
        try (Stream<Path> s = Files.walk(K8S)) {
            return s.filter(p -> p.toString().endsWith(".yaml") || p.toString().endsWith(".yml")).map(Path::normalize)
                    .sorted().toList();
        }
    }

    static List<Path> javaSources() throws IOException {
        try (Stream<Path> s = Files.walk(SRC)) {
            return s.filter(p -> p.toString().endsWith(".java")).sorted().toList();
        }
    }

    static boolean isKustomization(Path f) {
        return f.getFileName().toString().matches("kustomization\\.ya?ml");
    }

    static List<Object> loadAll(Path file) throws IOException {
        List<Object> docs = new ArrayList<>();
        try (Reader r = Files.newBufferedReader(file)) {
            for (Object o : new Yaml(new SafeConstructor(new LoaderOptions())).loadAll(r)) {
                if (o != null) {
                    docs.add(o);
                }
            }
        } catch (RuntimeException e) {
            fail(file + " is not valid YAML: " + e.getMessage());
        }
        return docs;
    }

    static Object at(Object node, String... path) {
        Object cur = node;
        for (String p : path) {
            if (!(cur instanceof Map<?, ?> m)) {
                return null;
            }
            cur = m.get(p);
        }
        return cur;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) {
        return o instanceof Map<?, ?> ? (Map<String, Object>) o : null;
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> maps(Object o) {
        if (o == null) {
            return List.of();
        }
        assertTrue(o instanceof List<?> l && l.stream().allMatch(Map.class::isInstance), "expected a list of maps: " + o);
        return (List<Map<String, Object>>) o;
    }

    static List<String> strings(Object o) {
        if (o == null) {
            return List.of();
        }
        assertTrue(o instanceof List<?>, "expected a list: " + o);
        return ((List<?>) o).stream().map(String::valueOf).toList();
    }

    static String str(Object o) {
        return o == null ? "" : String.valueOf(o);
    }

    static int num(Object o) {
        assertNotNull(o, "missing number");
        return o instanceof Number n ? n.intValue() : Integer.parseInt(String.valueOf(o));
    }

    static <T> T single(List<T> list) {
        assertEquals(1, list.size(), "expected exactly one element: " + list);
        return list.get(0);
    }
}
