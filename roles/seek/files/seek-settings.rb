# frozen_string_literal: true

# SEEK's first administrator and the settings the inventory holds, applied by the seek-settings Job
# (roles/seek/tasks/settings.yml) with `bundle exec rails runner` in SEEK's own image, before the
# Ingress lets anyone in. Written after seek4science/seek v1.18.1 (read there, not copied):
# - a SEEK without users sends visitors to sign-up, and the first Person saved becomes
#   administrator (ApplicationController#redirect_to_sign_up_when_no_user; Person#first_person_admin);
#   sign-up saves a User (login, password of at least User::MIN_PASSWORD_LENGTH = 10), activates it
#   when no activation is required, then saves its Person (UsersController#create,
#   PeopleController#create); the admin role is Person#is_admin= (lib/seek/roles/accessors.rb);
# - the settings are Seek::Config's (lib/seek/config.rb, config/initializers/seek_configuration.rb):
#   site_base_host, registration_disabled, email_enabled, noreply_sender, and the smtp hash written
#   field by field with set_smtp_settings (a blank value is stored as nil), as the admin pages do
#   (AdminController#update_features_enabled, #update_settings). Settings rows clear SEEK's settings
#   cache (tmp/cache, the seek-cache volume) when saved (app/models/settings.rb).
# Only what differs is written: a second run with the same values changes nothing. An existing
# account is never changed (its password may have been changed in SEEK since). The values come from
# the environment, the passwords from the Secret seek-settings; no password is ever printed.

def setting(name)
  ENV.fetch("SEEK_#{name}", '')
end

def say(message)
  puts "seek-settings: #{message}"
end

changed = []

login = setting('ADMIN_LOGIN')
if login.empty?
  say 'seek_admin_login is empty: no administrator is created (the first to register becomes one)'
else
  user = User.where(login: login).first
  if user
    unless user.person&.is_admin?
      warn "seek-settings: the account #{login} exists and is not an administrator of SEEK. Set " \
           'seek_admin_login to another login, or make this account an administrator in SEEK, then run ' \
           'seek.yml again.'
      exit 1
    end
    say "administrator #{login} exists; left as it is"
  elsif Person.admins.any?
    say "SEEK has #{Person.admins.count} administrator(s) already: #{login} is not created " \
        '(seek_admin_login only creates the first one)'
  else
    email = setting('ADMIN_EMAIL')
    password = setting('ADMIN_PASSWORD')
    ActiveRecord::Base.transaction do
      disable_authorization_checks do
        user = User.new(login: login, password: password, password_confirmation: password)
        user.email = email
        user.check_email_present = true
        user.save!
        user.activate
        person = Person.new(first_name: login, email: email)
        user.person = person
        person.save!
        user.save!
        person.is_admin = true unless person.is_admin?
      end
    end
    changed << "administrator #{login} created"
  end
end

apply = lambda do |name, value|
  next if Seek::Config.send(name) == value

  Seek::Config.send("#{name}=", value)
  changed << name.to_s
end

apply.call(:site_base_host, setting('SITE_BASE_HOST'))
apply.call(:registration_disabled, setting('REGISTRATION_OPEN') != 'true')

if setting('SMTP_ADDRESS').empty?
  say "seek_smtp_address is empty: SEEK's email settings are left as they are"
else
  apply.call(:email_enabled, true)
  apply.call(:noreply_sender, setting('NOREPLY_SENDER'))
  {
    'address' => setting('SMTP_ADDRESS'),
    'port' => setting('SMTP_PORT'),
    'domain' => setting('SMTP_DOMAIN'),
    'authentication' => setting('SMTP_AUTHENTICATION'),
    'user_name' => setting('SMTP_USER_NAME'),
    'password' => setting('SMTP_PASSWORD'),
    'enable_starttls_auto' => setting('SMTP_ENABLE_STARTTLS_AUTO') == 'true'
  }.each do |field, value|
    wanted = value.presence
    next if Seek::Config.smtp_settings(field) == wanted

    Seek::Config.set_smtp_settings(field, wanted)
    changed << "smtp #{field}"
  end
end

say(changed.empty? ? 'nothing to change' : "changed: #{changed.join(', ')}")
