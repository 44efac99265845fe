//! The control file items as WMI instances of the SMS Provider's classes (ConfigMgr SDK:
//! `SMS_SCI_SysResUse`, `SMS_SCI_Component`, `SMS_EmbeddedProperty`, `SMS_UpdateCategoryInstance`),
//! their keys as WS-Management selectors, and back. Readers are tolerant: unknown properties are
//! ignored and a missing one reads as empty.

use sup_wsman::instance::{Instance, Value};

use crate::scf::*;

pub const SYS_RES_USE: &str = "SMS_SCI_SysResUse";
pub const COMPONENT: &str = "SMS_SCI_Component";
pub const EMBEDDED_PROPERTY: &str = "SMS_EmbeddedProperty";
pub const CATEGORY_INSTANCE: &str = "SMS_UpdateCategoryInstance";
pub const SITE_CONTROL_FILE: &str = "SMS_SiteControlFile";
/// `ItemType` of role rows and of components (SDK samples).
pub const ITEM_TYPE_SYS_RES_USE: &str = "System Resource Usage";
pub const ITEM_TYPE_COMPONENT: &str = "Component";

/// The WMI namespace of a site's SMS Provider.
pub fn namespace(site_code: &str) -> String {
    format!("root\\sms\\site_{site_code}")
}

/// A role row's `ItemName`: its NAL path, a comma, its role name (SDK "How to Configure the
/// Software Update Point").
pub fn row_item_name(row: &SysResUse) -> String {
    format!("{},{}", row.nal_path, row.role.role_name())
}

fn keys(file_type: u32, item_name: &str, item_type: &str, site: &str) -> Vec<(String, String)> {
    vec![
        ("FileType".into(), file_type.to_string()),
        ("ItemName".into(), item_name.into()),
        ("ItemType".into(), item_type.into()),
        ("SiteCode".into(), site.into()),
    ]
}

/// The selectors (keys) of a role row in the proposed file.
pub fn row_selectors(row: &SysResUse) -> Vec<(String, String)> {
    keys(
        FILE_TYPE_PROPOSED,
        &row_item_name(row),
        ITEM_TYPE_SYS_RES_USE,
        &row.site_code,
    )
}

/// The selectors (keys) of a component row in the proposed file.
pub fn component_selectors(c: &Component) -> Vec<(String, String)> {
    keys(
        FILE_TYPE_PROPOSED,
        &c.item_name,
        ITEM_TYPE_COMPONENT,
        &c.site_code,
    )
}

fn props_to_values(props: &[EmbeddedProperty]) -> Vec<Value> {
    props
        .iter()
        .map(|p| {
            Value::Object(
                Instance::new(EMBEDDED_PROPERTY)
                    .with("PropertyName", p.name.clone())
                    .with("Value", p.value.to_string())
                    .with("Value1", p.value1.clone())
                    .with("Value2", p.value2.clone()),
            )
        })
        .collect()
}

fn props_of(i: &Instance) -> Vec<EmbeddedProperty> {
    i.objects("Props")
        .filter_map(|o| {
            Some(EmbeddedProperty {
                name: o.text("PropertyName")?.to_string(),
                value: o
                    .text("Value")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
                value1: o.text("Value1").unwrap_or_default().to_string(),
                value2: o.text("Value2").unwrap_or_default().to_string(),
            })
        })
        .collect()
}

pub fn row_to_instance(row: &SysResUse) -> Instance {
    let mut i = Instance::new(SYS_RES_USE)
        .with("FileType", FILE_TYPE_PROPOSED.to_string())
        .with("ItemName", row_item_name(row))
        .with("ItemType", ITEM_TYPE_SYS_RES_USE)
        .with("NALPath", row.nal_path.clone())
        .with("NALType", row.nal_type.clone());
    i.set_all("Props", props_to_values(&row.props));
    i.push("PropLists", Value::Nil);
    i.push("RoleName", Value::Text(row.role.role_name().into()));
    i.push("SiteCode", Value::Text(row.site_code.clone()));
    i
}

/// A role row, if the instance is one of the two roles the procedure creates.
pub fn row_from_instance(i: &Instance) -> Option<SysResUse> {
    let role = Role::from_role_name(i.text("RoleName")?)?;
    Some(SysResUse {
        site_code: i.text("SiteCode").unwrap_or_default().to_string(),
        role,
        nal_path: i.text("NALPath").unwrap_or_default().to_string(),
        nal_type: i.text("NALType").unwrap_or(NAL_TYPE).to_string(),
        props: props_of(i),
    })
}

pub fn component_to_instance(c: &Component) -> Instance {
    let mut i = Instance::new(COMPONENT)
        .with("ComponentName", c.name.as_str())
        .with("FileType", FILE_TYPE_PROPOSED.to_string())
        .with("ItemName", c.item_name.clone())
        .with("ItemType", ITEM_TYPE_COMPONENT);
    i.set_all("Props", props_to_values(&c.props));
    i.push("PropLists", Value::Nil);
    i.push("SiteCode", Value::Text(c.site_code.clone()));
    i
}

/// A component row, if it is one of the SUP's two.
pub fn component_from_instance(i: &Instance) -> Option<Component> {
    let name = i.text("ComponentName").unwrap_or_default();
    let name = [
        ComponentName::WsusConfigurationManager,
        ComponentName::WsusSyncManager,
    ]
    .into_iter()
    .find(|c| c.as_str().eq_ignore_ascii_case(name.trim()))?;
    Some(Component {
        site_code: i.text("SiteCode").unwrap_or_default().to_string(),
        name,
        item_name: i.text("ItemName").unwrap_or_default().to_string(),
        props: props_of(i),
    })
}

/// Replaces the settings of an instance read from the provider by those of `props`, keeping
/// every property this model does not know (a Put writes the whole instance back).
pub fn with_props(mut read: Instance, props: &[EmbeddedProperty]) -> Instance {
    let mut merged: Vec<EmbeddedProperty> = props_of(&read)
        .into_iter()
        .filter(|p| props.iter().all(|n| n.name != p.name))
        .collect();
    merged.extend(props.iter().cloned());
    read.set_all("Props", props_to_values(&merged));
    read
}

/// One `SMS_UpdateCategoryInstance` as read: its key, and whether it is subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRow {
    pub id: u32,
    pub subscription: CategorySubscription,
    pub allow_subscription: bool,
}

fn boolean(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
}

pub fn category_from_instance(i: &Instance) -> Option<CategoryRow> {
    Some(CategoryRow {
        id: i.text("CategoryInstanceID")?.trim().parse().ok()?,
        subscription: CategorySubscription {
            unique_id: i.text("CategoryInstance_UniqueID")?.to_string(),
            subscribed: boolean(i.text("IsSubscribed")),
        },
        // Absent means allowed: older providers may not report it.
        allow_subscription: i.text("AllowSubscription").is_none_or(|v| boolean(Some(v))),
    })
}

/// `CategoryTypeName` of a category's unique id (`UpdateClassification:<guid>`,
/// `Product:<guid>`).
pub fn category_type(unique_id: &str) -> &str {
    unique_id.split_once(':').map_or("", |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{SupView, sup_row};

    #[test]
    fn a_row_round_trips_through_its_instance() {
        let row = sup_row(
            "CEN",
            &SupView {
                server: "cen-sup1.corp.example.com",
                http_port: 8530,
                https_port: 8531,
                ssl: true,
                proxy: None,
            },
        );
        let i = row_to_instance(&row);
        assert_eq!(
            i.text("ItemName"),
            Some(
                "[\"Display=\\\\cen-sup1.corp.example.com\\\"]MSWNET:[\"SMS_SITE=CEN\"]\\\\cen-sup1.corp.example.com\\,SMS Software Update Point"
            )
        );
        let ns = sup_wsman::instance::namespace_uri(&namespace("CEN"));
        let el = sup_wsman::xml::parse(i.to_xml(&ns).as_bytes()).unwrap();
        assert_eq!(
            row_from_instance(&Instance::from_element(&el)),
            Some(row.clone())
        );
        assert_eq!(row_selectors(&row)[0], ("FileType".into(), "2".into()));
    }

    #[test]
    fn a_put_keeps_the_properties_this_model_does_not_know() {
        let c = Component::new("CEN", ComponentName::WsusSyncManager, "cen-site");
        let mut read = component_to_instance(&Component {
            props: vec![
                EmbeddedProperty::value("Sync Now", 0),
                EmbeddedProperty::value1("Unknown Setting", "x"),
            ],
            ..c.clone()
        });
        read.push("Extra", Value::Text("kept".into()));
        let put = with_props(read, &[EmbeddedProperty::value("Sync Now", 1700000000)]);
        let back = component_from_instance(&put).unwrap();
        assert_eq!(back.props.len(), 2);
        assert_eq!(prop(&back.props, "Sync Now").unwrap().value, 1700000000);
        assert_eq!(prop(&back.props, "Unknown Setting").unwrap().value1, "x");
        assert_eq!(put.text("Extra"), Some("kept"));
    }

    #[test]
    fn categories_read_tolerantly() {
        let i = Instance::new(CATEGORY_INSTANCE)
            .with("CategoryInstanceID", "17")
            .with(
                "CategoryInstance_UniqueID",
                "Product:a38c835c-2950-4e87-86cc-6911a52c34a3",
            )
            .with("IsSubscribed", "true");
        let c = category_from_instance(&i).unwrap();
        assert_eq!(c.id, 17);
        assert!(c.subscription.subscribed && c.allow_subscription);
        assert_eq!(category_type(&c.subscription.unique_id), "Product");
        assert!(category_from_instance(&Instance::new(CATEGORY_INSTANCE)).is_none());
    }
}
