//! Optimistic concurrency: two writers replacing one object with the version they
//! read; in every round exactly one wins and the other gets 409 Conflict.

mod common;

use common::Server;

#[test]
fn two_writers_with_the_same_version_one_wins_one_conflicts() {
    let server = Server::start();
    server.ok(&["create", "configmap", "contended", "--from-literal=round=0"]);
    let dir = server.dir.path().to_path_buf();
    for round in 1..=5 {
        let current = server.get_json(&["configmap", "contended"]);
        let files: Vec<_> = ["a", "b"]
            .iter()
            .map(|writer| {
                let mut obj = current.clone();
                obj["data"]["round"] = serde_json::json!(format!("{round}-{writer}"));
                let path = dir.join(format!("{writer}.json"));
                std::fs::write(&path, obj.to_string()).unwrap();
                path
            })
            .collect();
        let results: Vec<(bool, String, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = files
                .iter()
                .map(|path| s.spawn(|| server.kubectl(&["replace", "-f", path.to_str().unwrap()])))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = results.iter().filter(|(ok, _, _)| *ok).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        let loser = results.iter().find(|(ok, _, _)| !ok).unwrap();
        assert!(
            loser.2.contains("Conflict") && loser.2.contains("the object has been modified"),
            "{}",
            loser.2
        );
        let stored = server.get_json(&["configmap", "contended"]);
        let value = stored["data"]["round"].as_str().unwrap().to_string();
        assert!(value.starts_with(&format!("{round}-")), "{value}");
    }
}
