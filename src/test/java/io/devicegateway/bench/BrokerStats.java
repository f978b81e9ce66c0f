package io.devicegateway.bench;

import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.MqttGlobalPublishFilter;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;
import com.hivemq.client.mqtt.mqtt3.message.publish.Mqtt3Publish;

/** Mosquitto's own counters, read from its {@code $SYS} tree. */
final class BrokerStats {

    private BrokerStats() {
    }

    /**
     * Messages the broker has dropped since it started because a session's queue was full
     * ({@code $SYS/broker/publish/messages/dropped}); -1 when it cannot be read. Mosquitto publishes it every
     * {@code sys_interval} (10 s) and only when it changed, retained: the value can be up to 10 s old, and it is 0
     * (nothing retained) until the first drop.
     */
    static long droppedSoFar(int port) {
        Mqtt3BlockingClient client = MqttClient.builder().useMqttVersion3()
                .identifier("sys-" + UUID.randomUUID().toString().substring(0, 8))
                .serverHost("127.0.0.1").serverPort(port).buildBlocking();
        try {
            client.connect();
            try (Mqtt3BlockingClient.Mqtt3Publishes publishes = client.publishes(MqttGlobalPublishFilter.ALL)) {
                client.subscribeWith().topicFilter("$SYS/broker/publish/messages/dropped").qos(MqttQos.AT_MOST_ONCE)
                        .send();
                Optional<Mqtt3Publish> p = publishes.receive(1, TimeUnit.SECONDS);
                return p.map(m -> Long.parseLong(new String(m.getPayloadAsBytes()).trim())).orElse(0L);
            } finally {
                client.disconnect();
            }
        } catch (Exception e) {
            return -1;
        }
    }
}
