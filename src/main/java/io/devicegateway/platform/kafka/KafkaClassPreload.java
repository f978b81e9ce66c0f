package io.devicegateway.platform.kafka;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.context.Initialized;
import jakarta.enterprise.event.Observes;

import org.jboss.logging.Logger;

import io.quarkus.runtime.ImageMode;

/**
 * Loads the Kafka producer's classes on a spare core while Quarkus is still starting (JVM only), as Spring Boot's
 * background pre-initializer does for its own heavy classes.
 *
 * <p>Why: the ingest writer's producer is made at the {@code StartupEvent}, and the first record then waits for
 * about 1,700 classes (the protocol's {@code ApiKeys} alone initialises a schema class for every request and response
 * of every API) that its threads load one after the other, on a JVM that is still interpreting. Loading them from the
 * moment the CDI container exists overlaps that with the rest of the start. Nothing is connected or configured here:
 * only classes, so there is nothing to undo and nothing that a configuration could make wrong.
 *
 * <p>Not in a native executable (its classes are built in), nor while one is being built (no thread may be started
 * then); a class that fails to load here is simply loaded, and its error reported, where it is used. Quarkus warns at
 * build time that this event is delivered differently in native mode (at image build): intended, since there is
 * nothing to do there, and the {@code StartupEvent} it recommends comes too late to overlap anything.
 */
@ApplicationScoped
public class KafkaClassPreload {

    private static final Logger LOG = Logger.getLogger(KafkaClassPreload.class);

    /** Roots whose loading, linking and static initialisation pull in the rest of the producer path. */
    static final String[] ROOTS = {
            "org.apache.kafka.common.protocol.ApiKeys",
            "org.apache.kafka.common.protocol.Errors",
            "org.apache.kafka.clients.producer.ProducerConfig",
            "org.apache.kafka.clients.producer.KafkaProducer",
            "org.apache.kafka.clients.producer.internals.Sender",
            "org.apache.kafka.clients.producer.internals.RecordAccumulator",
            "org.apache.kafka.clients.producer.internals.TransactionManager",
            "org.apache.kafka.clients.producer.internals.ProducerMetadata",
            "org.apache.kafka.clients.NetworkClient",
            "org.apache.kafka.common.network.Selector",
            "org.apache.kafka.common.network.KafkaChannel",
            "org.apache.kafka.common.metrics.Metrics",
            "org.apache.kafka.common.record.MemoryRecordsBuilder",
            // linking these verifies their parse methods, which loads every request and response class
            "org.apache.kafka.common.requests.AbstractRequest",
            "org.apache.kafka.common.requests.AbstractResponse",
            "org.apache.kafka.common.requests.ProduceRequest",
            "org.apache.kafka.common.requests.ProduceResponse",
            "org.apache.kafka.common.requests.MetadataRequest",
            "org.apache.kafka.common.requests.MetadataResponse",
            "org.apache.kafka.common.requests.ApiVersionsResponse",
            "org.apache.kafka.common.requests.InitProducerIdResponse",
            "org.apache.kafka.common.utils.AppInfoParser",
    };

    void start(@Observes @Initialized(ApplicationScoped.class) Object event) {
        if (ImageMode.current() != ImageMode.JVM) {
            return;
        }
        ClassLoader loader = Thread.currentThread().getContextClassLoader();
        Thread thread = new Thread(() -> load(loader), "kafka-class-preload");
        thread.setDaemon(true);
        thread.start();
    }

    static void load(ClassLoader loader) {
        long start = System.nanoTime();
        for (int i = 0; i < ROOTS.length; i++) {
            try {
                Class.forName(ROOTS[i], true, loader);
            } catch (Throwable e) { // LinkageError included: the class's user reports it
                LOG.debugf("Kafka class preload skipped %s: %s", ROOTS[i], e);
            }
        }
        // the producer registers its app-info MBean: the platform MBean server's first use loads ~250 classes
        java.lang.management.ManagementFactory.getPlatformMBeanServer();
        LOG.debugf("Kafka classes preloaded in %d ms", (System.nanoTime() - start) / 1_000_000);
    }
}
