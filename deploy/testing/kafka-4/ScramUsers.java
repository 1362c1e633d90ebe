// ScramUsers creates (or resets) SCRAM-SHA-256 and SCRAM-SHA-512 credentials through the Admin
// API, so that a cluster formatted before kafka-4.sh enabled SASL gets its users too.
// Run by kafka-4.sh with Java's single-file launcher:
//   java -cp 'libs/*' ScramUsers.java BOOTSTRAP USER=PASSWORD...
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public class ScramUsers {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        // One request per mechanism: the broker refuses two alterations of one user in one request.
        try (Admin admin = Admin.create(p)) {
            for (ScramMechanism m : new ScramMechanism[] {ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512}) {
                List<UserScramCredentialAlteration> alts = new ArrayList<>();
                for (int i = 1; i < args.length; i++) {
                    String[] up = args[i].split("=", 2);
                    alts.add(new UserScramCredentialUpsertion(up[0], new ScramCredentialInfo(m, 4096), up[1]));
                }
                admin.alterUserScramCredentials(alts).all().get(60, TimeUnit.SECONDS);
            }
        }
        System.out.println("scram users: " + (args.length - 1));
    }
}
