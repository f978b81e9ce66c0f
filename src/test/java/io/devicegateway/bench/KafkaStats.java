package io.devicegateway.bench;

import java.io.IOException;
import java.util.Set;

import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

/**
 * The local Kafka broker's own request counters, read over JMX ({@code LocalServers.Kafka#jmxPort}): how many produce
 * requests the gateway's batching costs the broker.
 */
final class KafkaStats implements AutoCloseable {

    private final JMXConnector connector;
    private final MBeanServerConnection server;

    KafkaStats(int jmxPort) throws IOException {
        this.connector = JMXConnectorFactory.connect(
                new JMXServiceURL("service:jmx:rmi:///jndi/rmi://127.0.0.1:" + jmxPort + "/jmxrmi"));
        this.server = connector.getMBeanServerConnection();
    }

    /** Produce requests the broker has handled since it started (all clients, all API versions); -1 if unreadable. */
    long produceRequests() {
        try {
            Set<ObjectName> names = server.queryNames(
                    new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,*"), null);
            long total = 0;
            for (ObjectName name : names) {
                total += ((Number) server.getAttribute(name, "Count")).longValue();
            }
            return total;
        } catch (Exception e) {
            return -1;
        }
    }

    @Override
    public void close() {
        try {
            connector.close();
        } catch (IOException e) {
            // the broker is going away with the bench
        }
    }
}
