package io.devicegateway.testing;

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
 */
public final class LocalRun {

    public static void main(String[] args) throws Exception {
        String kafka = System.getenv("KAFKA_BOOTSTRAP_SERVERS");
        String mqttHost = System.getenv("GATEWAY_MQTT_HOST");
        String redis = System.getenv("QUARKUS_REDIS_HOSTS");
        int mqttPort = Integer.parseInt(System.getenv().getOrDefault("GATEWAY_MQTT_PORT", "1883"));
        LocalServers local = null;
        if (kafka == null || mqttHost == null || redis == null) {
            System.out.println("run: starting local servers for what is not configured ...");
            local = LocalServers.start("local");
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
            simulate(mqttHost, mqttPort, running, seconds);
        } finally {
            if (local != null) {
                local.close();
            }
        }
    }

    /**
     * Three devices that announce themselves online and answer commands, a reading a second each, plus one event
     * and one bad message to show the dead-letter path.
     */
    private static void simulate(String host, int port, AtomicBoolean running, long seconds) {
        List<DeviceAgent> agents = new java.util.ArrayList<>();
        for (String device : List.of("truck-1", "truck-2", "sign-7")) {
            agents.add(new DeviceAgent(device, port).answering(200, "{\"ok\":true}").connect());
        }
        System.out.println("run: try  grpcurl -plaintext -d '{\"device_id\":\"truck-1\",\"name\":\"reboot\","
                + "\"await_response\":true}' localhost:8080 devicegateway.v1.DeviceGateway/SendEvent");
        Mqtt3BlockingClient client = Devices.connect(port);
        long end = seconds > 0 ? System.currentTimeMillis() + seconds * 1000 : Long.MAX_VALUE;
        int n = 0;
        while (running.get() && System.currentTimeMillis() < end) {
            for (String device : List.of("truck-1", "truck-2", "sign-7")) {
                client.publishWith().topic("devices/" + device + "/telemetry/temperature").qos(MqttQos.AT_LEAST_ONCE)
                        .payload(String.format("{\"celsius\":%.1f}", 20 + Math.random() * 5).getBytes()).send();
            }
            if (n == 2) {
                client.publishWith().topic("devices/sign-7/events/door-open").qos(MqttQos.AT_LEAST_ONCE)
                        .payload("{\"open\":true}".getBytes()).send();
                client.publishWith().topic("devices/bad id/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                        .payload("x".getBytes()).send();
            }
            n++;
            LocalServers.pause(1000); // one reading per second per device
        }
        client.disconnect();
        agents.forEach(DeviceAgent::close);
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
