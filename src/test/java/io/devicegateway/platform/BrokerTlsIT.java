package io.devicegateway.platform;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.TestCertificates;
import io.devicegateway.v1.DeviceMessage;

/**
 * TLS from the gateway to the broker, configured the way operators do it: {@code gateway.mqtt.tls-configuration-name}
 * naming a Quarkus TLS registry entry with PEM files. Real Mosquitto with mutual-TLS listeners, certificates made
 * by {@code openssl} per run, and the packaged gateway as a process (a process per case, because TLS settings
 * are read once at start).
 *
 * <p>Needs {@code target/quarkus-app/quarkus-run.jar}: surefire runs before {@code package}, so on a clean build
 * this class is skipped; build the jar first ({@code ./mvnw -B -o package -DskipTests}), then run it.
 */
class BrokerTlsIT {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static final String TLS = "mqtt";
    private static final String CLIENT_ID = "dgw-broker-tls-test";
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
    private static final ObjectMapper JSON = new ObjectMapper();

    private static Path certs;
    private static LocalServers servers;
    /** Mutual TLS; the broker's certificate names DNS:localhost and IP:127.0.0.1. */
    private static int tlsPort;
    /** Mutual TLS; the broker's certificate names DNS:localhost only. */
    private static int dnsOnlyPort;

    private GatewayProcess gateway;
    private Path gatewayLog;

    @BeforeAll
    static void startServers() throws Exception {
        assumeTrue(Files.exists(GatewayProcess.DEFAULT_JAR), "no " + GatewayProcess.DEFAULT_JAR
                + " yet (surefire runs before package): build it with ./mvnw -B -o package -DskipTests, then rerun");
        certs = Files.createDirectories(Paths.get("target", "broker-tls", UUID.randomUUID().toString().substring(0, 8))
                .toAbsolutePath());
        makeCertificates();
        tlsPort = LocalServers.freePort();
        dnsOnlyPort = LocalServers.freePort();
        servers = LocalServers.startWith("broker-tls", 0, m -> {
            m.extraConfig.addAll(tlsListener(tlsPort, "server"));
            m.extraConfig.addAll(tlsListener(dnsOnlyPort, "server-dns-only"));
        });
    }

    private static List<String> tlsListener(int port, String serverCert) {
        return List.of("listener " + port + " 127.0.0.1",
                "cafile " + certs.resolve("ca.crt"),
                "certfile " + certs.resolve(serverCert + ".crt"),
                "keyfile " + certs.resolve(serverCert + ".key"),
                "require_certificate true");
    }

    @AfterEach
    void stopGateway() {
        if (gateway != null) {
            gateway.stop(false);
            gateway = null;
        }
    }

    @AfterAll
    static void stopServers() {
        if (servers != null) {
            servers.close();
        }
    }

    @Test
    void ingestsOverMutualTls() throws Exception {
        start("mtls", tlsConfig("ca.crt", true));
        awaitReady();
        assertEquals("ok", health().mqttState(), "mqtt check when ready");

        String id = Devices.uniqueId("tls");
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port); // devices keep the plain listener
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            Devices.publish(device, "devices/" + id + "/telemetry", "over-tls".getBytes(StandardCharsets.UTF_8), 1);
            ConsumerRecord<String, byte[]> record = telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
            assertEquals("over-tls", DeviceMessage.parseFrom(record.value()).getPayload().toStringUtf8());
        } finally {
            device.disconnect();
        }
    }

    @Test
    void wrongCaIsNotReadyWithATlsError() {
        start("wrong-ca", tlsConfig("wrong-ca.crt", true));
        Health h = awaitNotReady(state -> state.contains("TLS"));
        assertTrue(h.mqttState().startsWith("TLS handshake with the broker failed"), h.mqttState());
    }

    @Test
    void missingClientCertificateIsNotReady() {
        start("no-client-cert", tlsConfig("ca.crt", false));
        Health h = awaitNotReady(state -> !state.equals("connecting"));
        // TLS 1.3: the client's side of the handshake completes before the broker checks the (missing) client
        // certificate; the broker's alert arrives afterwards and must still be reported as what it is
        assertTrue(h.mqttState().contains("TLS") && h.mqttState().contains("certificate"), h.mqttState());
    }

    @Test
    void hostnameVerificationIsOnByDefault() {
        Map<String, String> config = tlsConfig("ca.crt", true);
        config.put("gateway.mqtt.host", "127.0.0.1"); // the certificate of this listener names DNS:localhost only
        config.put("gateway.mqtt.port", Integer.toString(dnsOnlyPort));
        start("hostname-verified", config);
        Health h = awaitNotReady(state -> state.contains("TLS"));
        assertTrue(h.mqttState().contains("127.0.0.1"), "the error names the address that did not match: "
                + h.mqttState());
        stopGateway();

        config.put("quarkus.tls." + TLS + ".hostname-verification-algorithm", "NONE");
        start("hostname-not-verified", config);
        awaitReady();
    }

    // ------------------------------------------------------------------ gateway

    /** Gateway config for the mTLS listener: trust store {@code caFile}, the client certificate if wanted. */
    private static Map<String, String> tlsConfig(String caFile, boolean clientCertificate) {
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        config.put("gateway.mqtt.host", "localhost");
        config.put("gateway.mqtt.port", Integer.toString(tlsPort));
        config.put("gateway.mqtt.client-id", CLIENT_ID);
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        config.put("gateway.mqtt.tls-configuration-name", TLS);
        config.put("quarkus.tls." + TLS + ".trust-store.pem.certs", certs.resolve(caFile).toString());
        if (clientCertificate) {
            // the key pair is named "client", not "0" as in the Quarkus docs: as environment variables (Kubernetes)
            // QUARKUS_TLS_MQTT_KEY_STORE_PEM_0_CERT reads as a list index and configures no key store at all
            config.put("quarkus.tls." + TLS + ".key-store.pem.client.cert", certs.resolve("client.crt").toString());
            config.put("quarkus.tls." + TLS + ".key-store.pem.client.key", certs.resolve("client.key").toString());
        }
        return config;
    }

    private void start(String name, Map<String, String> config) {
        gatewayLog = servers.workDir.resolve("gateway-" + name + ".log");
        gateway = GatewayProcess.start(config, List.of("-Xmx256m"), gatewayLog);
    }

    private void awaitReady() {
        try {
            gateway.awaitReady(TIMEOUT);
        } catch (IllegalStateException e) {
            Health h = health();
            throw new AssertionError(e.getMessage() + "; mqtt state: " + (h == null ? "-" : h.mqttState())
                    + "; log " + gatewayLog, e);
        }
    }

    /** Waits until readiness answers 503 with the mqtt check DOWN and a state that satisfies {@code expected}. */
    private Health awaitNotReady(java.util.function.Predicate<String> expected) {
        Health[] last = { null };
        try {
            Awaitility.await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(200)).until(() -> {
                assertTrue(gateway.alive(), "the gateway exited, see " + gatewayLog);
                last[0] = health();
                return last[0] != null && last[0].status() == 503 && !last[0].mqttUp()
                        && expected.test(last[0].mqttState());
            });
        } catch (org.awaitility.core.ConditionTimeoutException e) {
            throw new AssertionError("readiness never reached the expected failure; last: " + last[0] + "; log "
                    + gatewayLog, e);
        }
        return last[0];
    }

    record Health(int status, boolean mqttUp, String mqttState) {
    }

    /** The readiness answer and the mqtt check in it; null while the gateway does not serve HTTP yet. */
    private Health health() {
        try {
            HttpResponse<String> response = HTTP.send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + gateway.httpPort + "/q/health/ready"))
                    .timeout(Duration.ofSeconds(2)).build(), HttpResponse.BodyHandlers.ofString());
            for (JsonNode check : JSON.readTree(response.body()).path("checks")) {
                if (check.path("name").asText().equals("mqtt")) {
                    return new Health(response.statusCode(), check.path("status").asText().equals("UP"),
                            check.path("data").path("state").asText());
                }
            }
            return new Health(response.statusCode(), false, "(no mqtt check in " + response.body() + ")");
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    // ------------------------------------------------------------------ certificates

    /**
     * A CA; broker certificates signed by it for CN=localhost with and without the IP:127.0.0.1 SAN; a client
     * certificate signed by it; an unrelated CA. World-readable: Mosquitto drops from root to user mosquitto.
     */
    private static void makeCertificates() {
        new TestCertificates(certs).ca("ca").ca("wrong-ca")
                .signed("ca", "server", "localhost",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
                .signed("ca", "server-dns-only", "localhost",
                        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
                .signed("ca", "client", "device-gateway", "extendedKeyUsage=clientAuth\n")
                .readableByOthers();
    }
}
