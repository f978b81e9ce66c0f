package io.devicegateway.platform.mqtt;

import java.util.List;

/**
 * A capability's share of the gateway's MQTT connection: the filters it subscribes to and the handler for
 * what arrives on them. {@link MqttConnection} collects every such bean before it connects, so a persistent
 * session's redelivered messages always find their handler (see STACK.md trap 5).
 */
public interface MqttSubscription {

    /** Topic filters, without any {@code $share/} prefix. */
    List<String> filters();

    /** Whether these filters go through the shared group when one is configured (ingest does, replies must not). */
    default boolean shared() {
        return true;
    }

    /** Messages received and not yet acknowledged; shutdown waits for this to reach 0 before disconnecting. */
    default int inFlight() {
        return 0;
    }

    /** Called on the connection's event loop; must not block. The handler owns acknowledging the message. */
    void onMessage(InboundMessage message);
}
