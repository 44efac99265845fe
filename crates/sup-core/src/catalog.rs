//! The WSUS 3.0 categories a ConfigMgr 2007 SUP offers: update classifications, products and
//! languages. Categories are matched on GUID, never on title; titles are only what people type.
//! Every GUID here was read in a public source (see the project's catalog reference); products
//! without a published GUID are absent rather than invented.

/// A selectable entry: the console title and the WSUS identifier (category GUID, lower case, or
/// the WSUS language code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub title: &'static str,
    pub id: &'static str,
}

const fn e(title: &'static str, id: &'static str) -> Entry {
    Entry { title, id }
}

/// The eight update classifications of ConfigMgr 2007.
pub const CLASSIFICATIONS: &[Entry] = &[
    e("Critical Updates", "e6cf1350-c01b-414d-a61f-263d14d133b4"),
    e("Definition Updates", "e0789628-ce08-4437-be74-2495b842f43b"),
    e("Feature Packs", "b54e7d24-7add-428f-8b75-90a396fa584f"),
    e("Security Updates", "0fa1201d-4330-4fa8-8ae9-b877473b6441"),
    e("Service Packs", "68c5b0a3-d1a6-4553-ae49-01d3a7827828"),
    e("Tools", "b4832bd8-e735-4761-8daf-37f882276dab"),
    e("Update Rollups", "28bc880e-0592-4cbf-8f95-c79b17911d5f"),
    e("Updates", "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"),
];

/// Product families and products of the WSUS 3.0 era.
pub const PRODUCTS: &[Entry] = &[
    // Families.
    e("Windows", "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"),
    e("Office", "477b856e-65c4-4473-b621-a8b230bb70d9"),
    e("Exchange", "352f9494-d516-4b40-a21a-cd2416098982"),
    e("SQL Server", "0a4c6c73-8887-4d7f-9cbe-d08fa8fa9d1e"),
    e("Forefront", "f8c3c9a9-10de-4f09-bc16-5eb1b861fb4c"),
    e(
        "Systems Management Server",
        "78f4e068-1609-4e7a-ac8e-174288fa70a1",
    ),
    e(
        "Internet Security and Acceleration Server",
        "0580151d-fd22-4401-aa2b-ce1e3ae62bc9",
    ),
    e(
        "Developer Tools, Runtimes, and Redistributables",
        "48ce8c86-6850-4f68-8e9d-7dc8535ced60",
    ),
    e("System Center", "26a5d0a5-b108-46f1-93fa-f2a9cf10d029"),
    // Windows.
    e("Windows 2000", "3b4b8621-726e-43a6-b43b-37d07ec7019f"),
    e("Windows XP", "558f4bc3-4827-49e1-accf-ea79fd72d4c9"),
    e(
        "Windows XP x64 Edition",
        "4cb6ebd5-e38a-4826-9f76-1416a6f563b0",
    ),
    e(
        "Windows XP 64-Bit Edition Version 2003",
        "a4bedb1d-a809-4f63-9b49-3fe31967b6d0",
    ),
    e("Windows Vista", "26997d30-08ce-4f25-b2de-699c36a8033a"),
    e("Windows 7", "bfe5b177-a086-47a0-b102-097e4fa1f807"),
    e(
        "Windows Server 2003",
        "dbf57a08-0d5a-46ff-b30c-7715eb9498e9",
    ),
    e(
        "Windows Server 2003, Datacenter Edition",
        "7f44c2a7-bc36-470b-be3b-c01b6dc5dd4e",
    ),
    e(
        "Windows Server 2008",
        "ba0ae9cc-5f01-40b4-ac3f-50192b5d6aaf",
    ),
    e(
        "Windows Server 2008 R2",
        "fdfe8200-9d98-44ba-a12a-772282bf60ef",
    ),
    e(
        "Windows Small Business Server 2003",
        "032e3af5-1ac5-4205-9ae5-461b4e8cd26d",
    ),
    e(
        "Windows Small Business Server 2008",
        "575d68e2-7c94-48f9-a04f-4b68555d972d",
    ),
    e(
        "Windows Essential Business Server 2008",
        "e9b56b9a-0ca9-4b3e-91d4-bdcf1ac7d94d",
    ),
    e("Windows Defender", "8c3fcc84-7410-4a95-8b89-a166a0190486"),
    // Office, Exchange, SQL Server.
    e("Office XP", "6248b8b1-ffeb-dbd9-887a-2acf53b09dfe"),
    e("Office 2003", "1403f223-a63f-f572-82ba-c92391218055"),
    e("Office 2007", "041e4f9f-3a3d-4f58-8b2f-5e6fe95c4591"),
    e("Office 2010", "84f5f325-30d7-41c4-81d1-87a0e6535b66"),
    e(
        "Exchange 2000 Server",
        "83a83e29-7d55-44a0-afed-aea164bc35e6",
    ),
    e(
        "Exchange Server 2003",
        "3cf32f7c-d8ee-43f8-a0da-8b88a6f8af1a",
    ),
    e(
        "Exchange Server 2007",
        "26bb6be1-37d1-4ca6-baee-ec00b2f7d0f1",
    ),
    e(
        "Exchange Server 2007 and Above Anti-spam",
        "ab62c5bd-5539-49f6-8aea-5a114dd42314",
    ),
    e(
        "Exchange Server 2010",
        "9b135dd5-fc75-4609-a6ae-fb5d22333ef0",
    ),
    e("SQL Server 2000", "7145181b-9556-4b11-b659-0162fa9df11f"),
    e("SQL Server 2005", "60916385-7546-4e9b-836e-79d65e517bab"),
    e("SQL Server 2008", "c5f0b23c-e990-4b71-9808-718d353f533a"),
    e("SQL Server 2008 R2", "bb7bc3a7-857b-49d4-8879-b639cf5e8c3c"),
    e(
        "SQL Server Feature Pack",
        "c96c35fc-a21f-481b-917c-10c4f64792cb",
    ),
    // Security and management.
    e(
        "Forefront Client Security",
        "0a487050-8b0f-4f81-b401-be4ceacd61cd",
    ),
    e(
        "Forefront Endpoint Protection 2010",
        "a38c835c-2950-4e87-86cc-6911a52c34a3",
    ),
    e(
        "Internet Security and Acceleration Server 2004",
        "b627a8ff-19cd-45f5-a938-32879dd90123",
    ),
    e(
        "Internet Security and Acceleration Server 2006",
        "2cdbfa44-e2cb-4455-b334-fce74ded8eda",
    ),
    e(
        "System Center Configuration Manager 2007",
        "d22b3d16-bc75-418f-b648-e5f3d32490ee",
    ),
    e(
        "Systems Management Server 2003",
        "5a456666-3ac5-4162-9f52-260885d6533a",
    ),
    e("Visual Studio 2005", "a0dd7e72-90ec-41e3-b370-c86a245cd44f"),
    e("Visual Studio 2008", "e3fde9f8-14d6-4b5c-911c-fba9e0fc9887"),
    e(
        "Office Communications Server 2007",
        "e164fc3d-96be-4811-8ad5-ebe692be33dd",
    ),
    e(
        "Office Communications Server 2007 R2",
        "22bf57a8-4fe1-425f-bdaa-32b4f655284b",
    ),
    e(
        "Office Communicator 2007 R2",
        "8bc19572-a4b6-4910-b70d-716fecffc1eb",
    ),
    e("Virtual PC", "c8a4436c-1043-4288-a065-0f37e9640d60"),
    e("Virtual Server", "f61ce0bd-ba78-4399-bb1c-098da328f2cc"),
];

/// Update languages with their WSUS codes, for both lists of the Languages page.
///
/// Sources, per row: the code is the [MS-LCID] language tag of the LCID in the comment (MS-LCID
/// §2.2, "LCID Structure"; the title is MS-LCID's language name, shortened where the console's
/// culture name is shorter), written lower case because WSUS stores codes lower case
/// ("If you set the property to pt-BR, WSUS returns the property value as pt-br",
/// IUpdateServer.PreferredCulture, learn.microsoft.com ms751963). Server-to-server sync names
/// languages by MS-LCID short names (MS-WSUSSS 3.1.4.4.3.3, `ServerSyncLanguageData`), and the
/// same LCIDs are the `Locale:<n>` values of ConfigMgr's update-language rules. Only `en` and
/// `pt-br` are also printed in WSUS's own documentation; a real server's list (GetConfigData) is
/// authoritative, and this table names its entries for people.
pub const LANGUAGES: &[Entry] = &[
    e("English", "en"),                       // MS-LCID 9: en, English
    e("Arabic", "ar"),                        // MS-LCID 1: ar, Arabic
    e("Chinese (Simplified)", "zh-cn"), // MS-LCID 2052: zh-CN, Chinese (Simplified), People's Republic of China
    e("Chinese (Traditional)", "zh-tw"), // MS-LCID 1028: zh-TW, Chinese (Traditional), Taiwan
    e("Chinese (Hong Kong S.A.R.)", "zh-hk"), // MS-LCID 3076: zh-HK, Chinese (Traditional), Hong Kong S.A.R.
    e("Czech", "cs"),                         // MS-LCID 5: cs, Czech
    e("Danish", "da"),                        // MS-LCID 6: da, Danish
    e("Dutch", "nl"),                         // MS-LCID 19: nl, Dutch
    e("Finnish", "fi"),                       // MS-LCID 11: fi, Finnish
    e("French", "fr"),                        // MS-LCID 12: fr, French
    e("German", "de"),                        // MS-LCID 7: de, German
    e("Greek", "el"),                         // MS-LCID 8: el, Greek
    e("Hebrew", "he"),                        // MS-LCID 13: he, Hebrew
    e("Hindi", "hi"),                         // MS-LCID 57: hi, Hindi
    e("Hungarian", "hu"),                     // MS-LCID 14: hu, Hungarian
    e("Italian", "it"),                       // MS-LCID 16: it, Italian
    e("Japanese", "ja"),                      // MS-LCID 17: ja, Japanese
    e("Korean", "ko"),                        // MS-LCID 18: ko, Korean
    e("Norwegian", "no"),                     // MS-LCID 20: no, Norwegian (Bokmal)
    e("Polish", "pl"),                        // MS-LCID 21: pl, Polish
    e("Portuguese", "pt"),                    // MS-LCID 22: pt, Portuguese
    e("Portuguese (Brazil)", "pt-br"),        // MS-LCID 1046: pt-BR, Portuguese, Brazil
    e("Russian", "ru"),                       // MS-LCID 25: ru, Russian
    e("Spanish", "es"),                       // MS-LCID 10: es, Spanish
    e("Swedish", "sv"),                       // MS-LCID 29: sv, Swedish
    e("Turkish", "tr"),                       // MS-LCID 31: tr, Turkish
];

/// What ConfigMgr 2007 selects when nothing is said.
pub const DEFAULT_CLASSIFICATIONS: &[&str] = &["Critical Updates", "Security Updates"];

/// Looks `name` up by title or identifier, case-insensitively.
pub fn find(table: &'static [Entry], name: &str) -> Option<Entry> {
    let name = name.trim();
    table
        .iter()
        .find(|e| e.title.eq_ignore_ascii_case(name) || e.id.eq_ignore_ascii_case(name))
        .copied()
}

/// The title in `table` closest to `name`, to suggest when `name` is unknown.
pub fn closest(table: &'static [Entry], name: &str) -> Option<&'static str> {
    let wanted = name.trim().to_ascii_lowercase();
    table
        .iter()
        .map(|e| {
            let score = strsim::jaro_winkler(&wanted, &e.title.to_ascii_lowercase());
            (score, e.title)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(score, _)| *score > 0.6)
        .map(|(_, title)| title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_classifications_with_guids() {
        assert_eq!(CLASSIFICATIONS.len(), 8);
        let all: Vec<_> = CLASSIFICATIONS.iter().chain(PRODUCTS).collect();
        for entry in &all {
            assert_eq!(entry.id.len(), 36, "{}", entry.title);
            assert_eq!(entry.id, entry.id.to_ascii_lowercase());
        }
        let mut ids: Vec<_> = all.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "a GUID appears twice");
    }

    #[test]
    fn lookup_by_title_or_guid() {
        assert_eq!(
            find(CLASSIFICATIONS, "security updates").map(|e| e.id),
            Some("0fa1201d-4330-4fa8-8ae9-b877473b6441")
        );
        assert_eq!(
            find(PRODUCTS, "558F4BC3-4827-49E1-ACCF-EA79FD72D4C9").map(|e| e.title),
            Some("Windows XP")
        );
        assert_eq!(find(LANGUAGES, "German").map(|e| e.id), Some("de"));
        assert_eq!(
            find(LANGUAGES, "pt-BR").map(|e| e.title),
            Some("Portuguese (Brazil)")
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest(CLASSIFICATIONS, "Security Update"),
            Some("Security Updates")
        );
        assert_eq!(closest(PRODUCTS, "Windows XPP"), Some("Windows XP"));
        assert_eq!(closest(LANGUAGES, "Germn"), Some("German"));
    }
}
