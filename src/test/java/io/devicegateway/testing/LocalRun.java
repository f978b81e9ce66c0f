package io.devicegateway.testing;

import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.v1.DeviceMessage;

/**
 * {@code make run}: the gateway with everything it needs. Uses the Kafka, MQTT broker and Redis given by
 * {@code KAFKA_BOOTSTRAP_SERVERS}, {@code GATEWAY_MQTT_HOST}/{@code GATEWAY_MQTT_PORT} and {@code QUARKUS_REDIS_HOSTS};
 * starts local ones on free ports for whatever is not given. Then a few simulated devices publish and every
 * record the gateway writes to Kafka is printed, until Ctrl-C (or {@code -Drun.seconds=N}).
 *
 * <p>{@code -Drun.dynsec=true} ({@code make run-dynsec}): the local Mosquitto runs the dynamic-security plugin
 * ({@code mosquitto_ctrl dynsec init}, the gateway's user as its admin), anonymous clients are refused, the gateway
 * keeps the broker's clients in sync with the registry, and the simulated devices are provisioned through
 * {@code DeviceRegistry/RegisterDevice} and connect with their own credentials.
 */
public final class LocalRun {

    public static void main(String[] args) throws Exception {
        String kafka = System.getenv("KAFKA_BOOTSTRAP_SERVERS");
        String mqttHost = System.getenv("GATEWAY_MQTT_HOST");
        String redis = System.getenv("QUARKUS_REDIS_HOSTS");
        int mqttPort = Integer.parseInt(System.getenv().getOrDefault("GATEWAY_MQTT_PORT", "1883"));
        boolean dynsec = Boolean.getBoolean("run.dynsec");
        if (dynsec && mqttHost != null) {
            System.out.println("run: -Drun.dynsec=true with GATEWAY_MQTT_HOST set: your broker must run dynamic security "
                    + "with GATEWAY_MQTT_USERNAME/GATEWAY_MQTT_PASSWORD as its admin (README: Device registry)");
        }
        LocalServers local = null;
        if (kafka == null || mqttHost == null || redis == null) {
            System.out.println("run: starting local servers for what is not configured ...");
            local = LocalServers.startWith("local", 0, m -> {
                if (dynsec && System.getenv("GATEWAY_MQTT_HOST") == null) {
                    Path file = MosquittoDynsec.configure(m, "local");
                    System.out.println("run: Mosquitto with dynamic security, config " + file);
                }
            });
            kafka = kafka != null ? kafka : local.kafka.bootstrapServers();
            if (mqttHost == null) {
                mqttHost = "127.0.0.1";
                mqttPort = local.mosquitto.port;
            }
            redis = redis != null ? redis : "redis://127.0.0.1:" + local.redis.port;
        }
        System.out.printf("run: Kafka %s, MQTT %s:%d, Redis %s%n", kafka, mqttHost, mqttPort, redis);

        Map<String, String> config = new LinkedHashMap<>();
        config.put("kafka.bootstrap.servers", kafka);
        config.put("gateway.mqtt.host", mqttHost);
        config.put("gateway.mqtt.port", Integer.toString(mqttPort));
        config.put("quarkus.redis.hosts", redis);
        config.put("quarkus.profile", "local");
        config.put("quarkus.http.port", System.getenv().getOrDefault("QUARKUS_HTTP_PORT", "8080"));
        if (dynsec) {
            config.put("gateway.mqtt.username", System.getenv().getOrDefault("GATEWAY_MQTT_USERNAME",
                    MosquittoDynsec.GATEWAY_USER));
            config.put("gateway.mqtt.password", System.getenv().getOrDefault("GATEWAY_MQTT_PASSWORD",
                    MosquittoDynsec.GATEWAY_PASSWORD));
            config.put("gateway.registry.mosquitto-dynsec.enabled", "true");
            byte[] key = new byte[32];
            new java.security.SecureRandom().nextBytes(key);
            config.put("gateway.registry.mosquitto-dynsec.pending-key", java.util.Base64.getEncoder()
                    .encodeToString(key));
        }
        long seconds = Long.getLong("run.seconds", 0);
        AtomicBoolean running = new AtomicBoolean(true);
        try (GatewayProcess gateway = GatewayProcess.start(config, List.of(), null)) {
            gateway.awaitReady(Duration.ofSeconds(60));
            System.out.printf("run: gateway ready on http://localhost:%d (metrics /q/metrics, health /q/health)%n",
                    gateway.httpPort);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> running.set(false)));
            Thread tail = new Thread(() -> tail(config.get("kafka.bootstrap.servers"), running), "kafka-tail");
            tail.setDaemon(true);
            tail.start();
            Map<String, String> passwords = dynsec ? provision(gateway.httpPort) : Map.of();
            simulate(mqttHost, mqttPort, running, seconds, passwords);
        } finally {
            if (local != null) {
                local.close();
            }
        }
    }

    private static final List<String> DEVICES = List.of("truck-1", "truck-2", "sign-7");

    /** Registers the simulated devices through the registry API (auth is off in the local profile). */
    private static Map<String, String> provision(int httpPort) {
        Map<String, String> passwords = new LinkedHashMap<>();
        io.grpc.ManagedChannel channel = Agents.channel(httpPort);
        try {
            var registry = io.devicegateway.v1.DeviceRegistryGrpc.newBlockingStub(channel);
            for (String device : DEVICES) {
                try {
                    passwords.put(device, registry.registerDevice(io.devicegateway.v1.RegisterDeviceRequest
                            .newBuilder().setDeviceId(device).putLabels("site", "local-run").build()).getPassword());
                } catch (io.grpc.StatusRuntimeException e) {
                    if (e.getStatus().getCode() != io.grpc.Status.Code.ALREADY_EXISTS) {
                        throw e;
                    }
                    passwords.put(device, registry.rotateCredentials(io.devicegateway.v1.DeviceRef.newBuilder()
                            .setDeviceId(device).build()).getPassword()); // a Redis kept from an earlier run
                }
                System.out.printf("run: registered %s (broker user %s, password issued once)%n", device, device);
            }
        } finally {
            channel.shutdownNow();
        }
        System.out.println("run: try  grpcurl -plaintext localhost:8080 devicegateway.v1.DeviceRegistry/ListDevices");
        return passwords;
    }

    /**
     * Three devices that announce themselves online and answer commands, a reading a second each, plus one event
     * and (on an open broker) one bad message to show the dead-letter path. With credentials (dynsec), each device
     * publishes on its own connection, and an unregistered client is shown being refused.
     */
    private static void simulate(String host, int port, AtomicBoolean running, long seconds,
            Map<String, String> passwords) {
        Map<String, DeviceAgent> agents = new LinkedHashMap<>();
        for (String device : DEVICES) {
            DeviceAgent agent = new DeviceAgent(device, port).answering(200, "{\"ok\":true}");
            if (passwords.containsKey(device)) {
                agent.withCredentials(device, passwords.get(device));
            }
            agents.put(device, agent.connect());
        }
        System.out.println("run: try  grpcurl -plaintext -d '{\"device_id\":\"truck-1\",\"name\":\"reboot\","
                + "\"await_response\":true}' localhost:8080 devicegateway.v1.DeviceGateway/SendEvent");
        Mqtt3BlockingClient client = null;
        if (passwords.isEmpty()) {
            client = Devices.connect(port);
        } else {
            try {
                Devices.connect(port).disconnect();
                System.out.println("run: WARNING: the broker accepted an anonymous client");
            } catch (RuntimeException refused) {
                System.out.println("run: an anonymous client is refused by the broker, as it should be: "
                        + refused.getMessage());
            }
        }
        long end = seconds > 0 ? System.currentTimeMillis() + seconds * 1000 : Long.MAX_VALUE;
        int n = 0;
        while (running.get() && System.currentTimeMillis() < end) {
            for (String device : DEVICES) {
                byte[] reading = String.format("{\"celsius\":%.1f}", 20 + Math.random() * 5).getBytes();
                String topic = "devices/" + device + "/telemetry/temperature";
                if (client != null) {
                    client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE).payload(reading).send();
                } else {
                    agents.get(device).publish(topic, reading);
                }
            }
            if (n == 2) {
                byte[] open = "{\"open\":true}".getBytes();
                if (client != null) {
                    client.publishWith().topic("devices/sign-7/events/door-open").qos(MqttQos.AT_LEAST_ONCE)
                            .payload(open).send();
                    client.publishWith().topic("devices/bad id/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                            .payload("x".getBytes()).send();
                } else {
                    agents.get("sign-7").publish("devices/sign-7/events/door-open", open);
                    // not its topic: the broker drops it (MQTT 3.1.1), nothing reaches Kafka
                    agents.get("sign-7").publish("devices/truck-1/telemetry/temperature", "{\"forged\":true}"
                            .getBytes());
                }
            }
            n++;
            LocalServers.pause(1000); // one reading per second per device
        }
        if (client != null) {
            client.disconnect();
        }
        agents.values().forEach(DeviceAgent::close);
    }

    private static void tail(String bootstrap, AtomicBoolean running) {
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ConsumerConfig.GROUP_ID_CONFIG, "device-gateway-local-run",
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "latest"),
                new StringDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of("iot.telemetry", "iot.events", "iot.dlq"));
            while (running.get()) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    DeviceMessage m = DeviceMessage.parseFrom(r.value());
                    String reason = KafkaRecords.header(r, "reason");
                    System.out.printf("kafka %-14s key=%-8s stream=%-12s %s%s%n", r.topic(), r.key(), m.getStream(),
                            m.getPayload().toStringUtf8(), reason == null ? "" : "  reason=" + reason);
                }
            }
        } catch (Exception e) {
            if (running.get()) {
                e.printStackTrace();
            }
        }
    }
}
