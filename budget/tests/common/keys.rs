//! The agent-key part of the shared suite.

use chrono::{DateTime, TimeDelta, Utc};
use tollgate_budget::{KeyRecord, StoreError};

use super::Harness;

fn key(id: &str, seed: u8, parent: Option<&str>, created: DateTime<Utc>) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        agent: "crawler-1".into(),
        sha256: [seed; 32],
        label: Some(format!("label {id}")),
        created_at: created,
        expires_at: Some(created + TimeDelta::days(30)),
        revoked_at: None,
        not_after: None,
        parent_id: parent.map(str::to_owned),
    }
}

pub async fn exercise(h: &Harness) {
    let s = &h.store;
    let now = h.now();
    let root = key("k_root", 1, None, now);
    let child = key("k_child", 2, Some("k_root"), now);
    let grandchild = KeyRecord {
        label: None,
        expires_at: None,
        ..key("k_grand", 3, Some("k_child"), now)
    };
    let other = key("k_other", 4, None, now);
    for k in [&root, &child, &grandchild, &other] {
        s.put_key(k).await.unwrap();
    }
    assert_eq!(s.key_by_hash(&[2; 32]).await.unwrap(), Some(child.clone()));
    assert_eq!(s.key_by_hash(&[9; 32]).await.unwrap(), None);
    assert_eq!(
        s.key_by_id("k_grand").await.unwrap(),
        Some(grandchild.clone())
    );
    assert_eq!(s.key_by_id("k_none").await.unwrap(), None);
    let ids: Vec<String> = s
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["k_child", "k_grand", "k_other", "k_root"]);

    let dup_id = KeyRecord {
        sha256: [8; 32],
        ..root.clone()
    };
    assert!(matches!(
        s.put_key(&dup_id).await,
        Err(StoreError::Conflict(_))
    ));
    let dup_hash = key("k_new", 1, None, now);
    assert!(matches!(
        s.put_key(&dup_hash).await,
        Err(StoreError::Conflict(_))
    ));

    // Rotation: the old key gets a grace deadline; a new hash replaces the old one.
    let rotated = KeyRecord {
        not_after: Some(now + TimeDelta::hours(1)),
        sha256: [5; 32],
        ..other.clone()
    };
    assert!(s.update_key(&rotated).await.unwrap());
    assert_eq!(s.key_by_hash(&[4; 32]).await.unwrap(), None);
    assert_eq!(
        s.key_by_hash(&[5; 32]).await.unwrap(),
        Some(rotated.clone())
    );
    assert!(!s.update_key(&key("k_none", 6, None, now)).await.unwrap());
    let steal = KeyRecord {
        sha256: [1; 32],
        ..rotated.clone()
    };
    assert!(matches!(
        s.update_key(&steal).await,
        Err(StoreError::Conflict(_))
    ));

    // Revoking the root revokes its delegation chain, not the unrelated key.
    let revoked = s.revoke_key("k_root").await.unwrap().unwrap();
    assert_eq!(revoked, ["k_child", "k_grand", "k_root"]);
    let grand = s.key_by_id("k_grand").await.unwrap().unwrap();
    assert_eq!(grand.revoked_at, Some(now));
    assert!(!grand.usable_at(now));
    assert_eq!(
        s.key_by_id("k_other").await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(s.revoke_key("k_root").await.unwrap(), Some(vec![]));
    assert_eq!(s.revoke_key("k_none").await.unwrap(), None);
}
